"""Window aggregations: built-in count/sum/min/max/mean (numpy-vectorised) and user `Reduce`/`Aggregate`.

An aggregation folds values into an *accumulator* per window. Accumulators are treated as immutable
values: `add` and `merge` must return a new accumulator and never mutate their arguments (the engine
may share one between a window and its parts). Built-ins fold in record order, so a float sum is
bit-identical to adding the values one at a time, however the records were batched.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

Values = npt.NDArray[Any] | Sequence[Any] | None
"""One value per record: a numpy array, any sequence, or None (only for `Count`)."""

NumericDtype = Literal["float64", "int64"]

Column = npt.NDArray[Any]
Index = npt.NDArray[np.intp]


class Aggregation(ABC):
    """How to fold record values into a window accumulator, and how to store it in a changelog."""

    mergeable: bool = True
    """Whether `merge` is available (session and sliding windows need it)."""

    @abstractmethod
    def init(self) -> Any:
        """The accumulator of an empty window."""

    @abstractmethod
    def add(self, acc: Any, value: Any) -> Any:
        """`acc` with one more value."""

    def merge(self, a: Any, b: Any) -> Any:
        """The accumulator of the union of two disjoint sets of records."""
        raise TypeError(f"{type(self).__name__} has no merge")

    def result(self, acc: Any) -> Any:
        """The value emitted for a window."""
        return acc

    def check(self, value: Any) -> None:
        """Raise for a value this aggregation cannot fold (checked per record, before folding)."""
        return None

    @abstractmethod
    def dumps(self, acc: Any) -> bytes:
        """Serialize an accumulator for the changelog."""

    @abstractmethod
    def loads(self, data: bytes) -> Any:
        """Inverse of `dumps`."""

    def prepare(self, values: Values, n: int) -> Sequence[Any]:
        """The batch's values as `n` Python objects, as `add` receives them."""
        if values is None:
            return [None] * n
        out = values.tolist() if isinstance(values, np.ndarray) else values
        if len(out) != n:
            raise ValueError(f"{n} records but {len(out)} values")
        return out


def _code(dtype: np.dtype[Any]) -> str:
    return "d" if dtype.kind == "f" else "q"


class ColumnarAggregation(Aggregation):
    """A built-in whose accumulator is a fixed tuple of int64/float64 columns, updated with numpy.

    The one-record-at-a-time methods (`init`, `add`, ...) and the columnar ones (`update`, ...) give
    the same accumulators and the same `dumps` bytes, so either engine restores the other's changelog.
    """

    dtype: np.dtype[Any] | None
    """dtype of the input values (None: values are not used)."""
    columns: tuple[tuple[np.dtype[Any], int | float], ...]
    """(dtype, value of an empty window) per column."""

    def __init__(self) -> None:
        self._struct = struct.Struct(">" + "".join(_code(dt) for dt, _ in self.columns))

    def check(self, value: Any) -> None:
        if self.dtype is None:
            return
        ok = (int, np.integer) if self.dtype.kind == "i" else (int, float, np.integer, np.floating)
        if not isinstance(value, ok) or isinstance(value, bool | np.bool_):
            raise TypeError(
                f"{type(self).__name__}({self.dtype}) cannot fold a {type(value).__name__}: {value!r:.80}"
            )

    def values_array(self, values: Values, n: int) -> npt.NDArray[Any] | None:
        if self.dtype is None:
            return None
        if values is None:
            raise ValueError(f"{type(self).__name__} needs values")
        arr = np.asarray(values)
        if arr.dtype != self.dtype:
            arr = arr.astype(self.dtype, casting="same_kind" if arr.size else "unsafe")
        if arr.shape != (n,):
            raise ValueError(f"{n} records but values of shape {arr.shape}")
        return arr

    def prepare(self, values: Values, n: int) -> Sequence[Any]:
        arr = self.values_array(values, n)
        return [None] * n if arr is None else arr.tolist()

    def _tuple(self, acc: Any) -> tuple[Any, ...]:
        return (acc,)

    def _acc(self, row: tuple[Any, ...]) -> Any:
        return row[0]

    def init(self) -> Any:
        return self._acc(tuple(fill for _, fill in self.columns))

    def dumps(self, acc: Any) -> bytes:
        return self._struct.pack(*self._tuple(acc))

    def loads(self, data: bytes) -> Any:
        return self._acc(self._struct.unpack(data))

    def new_columns(self, shape: tuple[int, ...]) -> list[Column]:
        return [np.full(shape, fill, dtype=dt) for dt, fill in self.columns]

    @abstractmethod
    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        """Fold ``values[i]`` into cell ``idx[i]`` for each i, in order (`cols` are flat views)."""

    def results(self, cols: Sequence[Column], idx: Index) -> list[Any]:
        """`result` of the cells `idx`."""
        out: list[Any] = cols[0][idx].tolist()
        return out

    def encode(self, cols: Sequence[Column], idx: Index) -> list[bytes]:
        """`dumps` of the cells `idx`."""
        rec = np.empty(
            len(idx), dtype=[(f"c{i}", dt.newbyteorder(">")) for i, (dt, _) in enumerate(self.columns)]
        )
        for i, col in enumerate(cols):
            rec[f"c{i}"] = col[idx]
        buf, width = rec.tobytes(), rec.dtype.itemsize
        return [buf[i : i + width] for i in range(0, len(buf), width)]

    def store(self, cols: Sequence[Column], cell: int, acc: Any) -> None:
        """Set one cell to `acc`."""
        for col, v in zip(cols, self._tuple(acc), strict=True):
            col[cell] = v


def _need(values: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    if values is None:
        raise ValueError("values are required")
    return values


def _dtype(name: NumericDtype) -> np.dtype[Any]:
    if name not in ("float64", "int64"):
        raise ValueError(f"dtype must be 'float64' or 'int64', got {name!r}")
    return np.dtype(name)


class Count(ColumnarAggregation):
    """Number of records (values are ignored and may be None)."""

    dtype = None
    columns = ((np.dtype(np.int64), 0),)

    def add(self, acc: Any, value: Any) -> Any:
        return acc + 1

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        np.add.at(cols[0], idx, 1)


class Sum(ColumnarAggregation):
    """Sum of the values (int64 wraps on overflow, like numpy)."""

    def __init__(self, dtype: NumericDtype = "float64") -> None:
        self.dtype = _dtype(dtype)
        self.columns = ((self.dtype, 0),)
        self._cast: Callable[[Any], Any] = float if self.dtype.kind == "f" else int
        super().__init__()

    def add(self, acc: Any, value: Any) -> Any:
        return acc + self._cast(value)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        np.add.at(cols[0], idx, _need(values))


def _min(a: Any, b: Any) -> Any:
    return b if b < a or b != b else a  # NaN propagates, like np.minimum


def _max(a: Any, b: Any) -> Any:
    return b if b > a or b != b else a


class Min(ColumnarAggregation):
    """Smallest value (NaN propagates)."""

    def __init__(self, dtype: NumericDtype = "float64") -> None:
        self.dtype = _dtype(dtype)
        self.columns = ((self.dtype, float("inf") if self.dtype.kind == "f" else np.iinfo(np.int64).max),)
        self._cast: Callable[[Any], Any] = float if self.dtype.kind == "f" else int
        super().__init__()

    def add(self, acc: Any, value: Any) -> Any:
        return _min(acc, self._cast(value))

    def merge(self, a: Any, b: Any) -> Any:
        return _min(a, b)

    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        with np.errstate(invalid="ignore"):  # NaN propagates by design
            np.minimum.at(cols[0], idx, _need(values))


class Max(ColumnarAggregation):
    """Largest value (NaN propagates)."""

    def __init__(self, dtype: NumericDtype = "float64") -> None:
        self.dtype = _dtype(dtype)
        self.columns = ((self.dtype, float("-inf") if self.dtype.kind == "f" else np.iinfo(np.int64).min),)
        self._cast: Callable[[Any], Any] = float if self.dtype.kind == "f" else int
        super().__init__()

    def add(self, acc: Any, value: Any) -> Any:
        return _max(acc, self._cast(value))

    def merge(self, a: Any, b: Any) -> Any:
        return _max(a, b)

    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        with np.errstate(invalid="ignore"):  # NaN propagates by design
            np.maximum.at(cols[0], idx, _need(values))


class Mean(ColumnarAggregation):
    """Arithmetic mean as a float: accumulator (float64 sum, count), result ``sum / count``."""

    dtype = np.dtype(np.float64)
    columns = ((np.dtype(np.float64), 0.0), (np.dtype(np.int64), 0))

    def _tuple(self, acc: Any) -> tuple[Any, ...]:
        return tuple(acc)

    def _acc(self, row: tuple[Any, ...]) -> Any:
        return (row[0], row[1])

    def add(self, acc: Any, value: Any) -> Any:
        return (acc[0] + float(value), acc[1] + 1)

    def merge(self, a: Any, b: Any) -> Any:
        return (a[0] + b[0], a[1] + b[1])

    def result(self, acc: Any) -> Any:
        return acc[0] / acc[1]

    def update(self, cols: Sequence[Column], idx: Index, values: npt.NDArray[Any] | None) -> None:
        np.add.at(cols[0], idx, _need(values))
        np.add.at(cols[1], idx, 1)

    def results(self, cols: Sequence[Column], idx: Index) -> list[Any]:
        out: list[Any] = (cols[0][idx] / cols[1][idx]).tolist()
        return out


class _Empty:
    def __repr__(self) -> str:
        return "<empty>"


_EMPTY = _Empty()


class Reduce(Aggregation):
    """``fn(fn(v1, v2), v3) ...`` over a window's values, in record order.

    `fn` must be associative for session and sliding windows, which combine partial results with it.
    The value must round-trip through `dumps`/`loads` (default orjson: JSON types, lists not tuples).
    """

    def __init__(
        self,
        fn: Callable[[Any, Any], Any],
        *,
        dumps: Callable[[Any], bytes] = orjson.dumps,
        loads: Callable[[bytes], Any] = orjson.loads,
    ) -> None:
        self.fn, self._dumps, self._loads = fn, dumps, loads

    def init(self) -> Any:
        return _EMPTY

    def add(self, acc: Any, value: Any) -> Any:
        return value if acc is _EMPTY else self.fn(acc, value)

    def merge(self, a: Any, b: Any) -> Any:
        if a is _EMPTY:
            return b
        return a if b is _EMPTY else self.fn(a, b)

    def dumps(self, acc: Any) -> bytes:
        if acc is _EMPTY:
            raise ValueError("an empty Reduce accumulator is never stored")
        return self._dumps(acc)

    def loads(self, data: bytes) -> Any:
        return self._loads(data)


class Aggregate(Aggregation):
    """A user fold: ``init() -> acc``, ``add(acc, value) -> acc``, optional ``merge(acc, acc) -> acc``
    (required by session and sliding windows) and ``result(acc) -> emitted value``.

    The accumulator must round-trip through `dumps`/`loads` (default orjson: JSON types, lists not
    tuples), since it is restored from the changelog.
    """

    def __init__(
        self,
        init: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        merge: Callable[[Any, Any], Any] | None = None,
        result: Callable[[Any], Any] | None = None,
        *,
        dumps: Callable[[Any], bytes] = orjson.dumps,
        loads: Callable[[bytes], Any] = orjson.loads,
    ) -> None:
        self._init, self._add, self._merge, self._result = init, add, merge, result
        self._dumps, self._loads = dumps, loads
        self.mergeable = merge is not None

    def init(self) -> Any:
        return self._init()

    def add(self, acc: Any, value: Any) -> Any:
        return self._add(acc, value)

    def merge(self, a: Any, b: Any) -> Any:
        if self._merge is None:
            raise TypeError("this Aggregate has no merge")
        return self._merge(a, b)

    def result(self, acc: Any) -> Any:
        return acc if self._result is None else self._result(acc)

    def dumps(self, acc: Any) -> bytes:
        return self._dumps(acc)

    def loads(self, data: bytes) -> Any:
        return self._loads(data)
