package streamsvc.bench;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Nexmark Q5-lite on Kafka Streams (the peer of bench/run): bids counted per auction in 10 s windows
 * hopping every 2 s, grace 1 s, emitted when the window closes, exactly_once_v2 with 1 s commits.
 *
 * <p>Runs one pass per output topic in this JVM (cold, then warm); a pass ends when the harness writes
 * a line on stdin. Prints one JSON line per pass when its first record is processed.
 */
public final class Q5 {
    /** Event time: the bid's date_time field (epoch ms) in the JSON value. */
    public static final class BidTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            String v = (String) record.value();
            int i = v.indexOf("\"date_time\":");
            if (i < 0) {
                return partitionTime;
            }
            i += 12;
            long t = 0;
            while (i < v.length() && Character.isDigit(v.charAt(i))) {
                t = t * 10 + (v.charAt(i++) - '0');
            }
            return t;
        }
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        String[] outputs = args.get("outputs").split(",");
        BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (int pass = 0; pass < outputs.length; pass++) {
            runPass(args, outputs[pass], pass, stdin);
        }
        System.out.println("{\"event\":\"done\"}");
        System.out.flush();
        System.exit(0);
    }

    private static void runPass(Map<String, String> args, String output, int pass, BufferedReader stdin)
            throws Exception {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("app-id") + "-" + pass);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args.get("work") + "/" + pass);
        p.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, BidTime.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        AtomicBoolean first = new AtomicBoolean(true);
        final int thisPass = pass;
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args.get("source"), Consumed.with(Serdes.String(), Serdes.String()))
            .peek((k, v) -> {
                if (first.getAndSet(false)) {
                    System.out.println("{\"event\":\"first_record\",\"pass\":" + thisPass
                        + ",\"at\":" + (System.currentTimeMillis() / 1000.0) + "}");
                    System.out.flush();
                }
            })
            .groupByKey()
            .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), Duration.ofSeconds(1))
                .advanceBy(Duration.ofSeconds(2)))
            .count()
            .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            .toStream()
            .map((w, n) -> KeyValue.pair(w.key(), "{\"start\":" + w.window().start() + ",\"end\":"
                + w.window().end() + ",\"value\":" + n + "}"))
            .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.start();
        stdin.readLine(); // "next", "stop" or end of input: the harness has seen this pass's results
        streams.close(Duration.ofSeconds(30));
        streams.cleanUp();
    }
}
