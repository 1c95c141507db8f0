// Apache Iceberg's REST catalog test fixture (org.apache.iceberg.rest.RESTCatalogServer, iceberg-open-api
// test-fixtures jar) with its HTTP listener bound to one address. The fixture's own start() listens on all
// interfaces; this launcher builds the same catalog (from the CATALOG_* environment variables, through the
// fixture's backend initialisation) and the same servlet, but on a connector bound to -Dstreamsvc.rest.host
// (default 127.0.0.1). It sits in the fixture's package because the catalog context is package-private.
// Compiled by `streamsvc dev lake start` into $STREAMSVC_HOME; never shipped as a binary.
package org.apache.iceberg.rest;

import java.lang.reflect.Method;
import org.apache.iceberg.util.PropertyUtil;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class LoopbackRESTCatalogServer {
  private LoopbackRESTCatalogServer() {}

  public static void main(String[] args) throws Exception {
    String host = System.getProperty("streamsvc.rest.host", "127.0.0.1");
    RESTCatalogServer fixture = new RESTCatalogServer();
    Method init = RESTCatalogServer.class.getDeclaredMethod("initializeBackendCatalog");
    init.setAccessible(true);
    RESTCatalogServer.CatalogContext context = (RESTCatalogServer.CatalogContext) init.invoke(fixture);
    int port = PropertyUtil.propertyAsInt(context.configuration(), RESTCatalogServer.REST_PORT, 8181);

    ServletContextHandler handler = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    handler.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTServerCatalogAdapter(context))), "/*");
    handler.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(handler);
    server.start();
    System.out.println("streamsvc: Iceberg REST catalog listening on http://" + host + ":" + port);
    server.join();
  }
}
