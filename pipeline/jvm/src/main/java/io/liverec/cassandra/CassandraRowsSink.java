package io.liverec.cassandra;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * Idempotent Cassandra upserts from RowBatch records (state_schemas/cassandra_rows.py), acknowledged
 * before every checkpoint completes.
 *
 * <p>Each row is bound to a prepared {@code INSERT INTO <keyspace>.<table> JSON ? DEFAULT UNSET USING
 * TIMESTAMP ?}; rows go out in unlogged batches, asynchronously, with a bounded number of requests in
 * flight. {@link CassandraRowsWriter#flush} waits for every row written before it, and Flink calls it
 * before a checkpoint barrier passes the writer, so a completed checkpoint never covers an unwritten row.
 * With the rows' own write timestamps a replay after a failover rewrites the same cells: effectively once.
 *
 * <p>A plain {@link Sink} (no committer, no writer state): nothing to restore, the replay from the last
 * checkpoint rewrites whatever was in flight.
 *
 * <p>Serializable (it travels in the job graph): it holds settings only; the writer opens the session.
 * Metrics: see {@link CassandraRowsWriter}.
 */
public final class CassandraRowsSink implements Sink<byte[]> {
    private static final long serialVersionUID = 1L;

    /** Used when no local datacenter is given: the name of a default single-datacenter cluster. */
    public static final String DEFAULT_DATACENTER = "datacenter1";

    final String name;
    final ArrayList<String> contactPoints;
    final int port;
    final String localDatacenter;
    final String keyspace;
    final ArrayList<String> tables;
    final String username;
    final String password;
    final int maxInFlight;
    final int rowsPerBatch;
    final double writeTimeoutSeconds;

    /**
     * @param name what logs and errors call this sink (e.g. the operator's name)
     * @param contactPoints hosts or IP addresses of Cassandra nodes
     * @param localDatacenter the datacenter to write to; null: {@value #DEFAULT_DATACENTER}
     * @param tables the table of each number of a row's table byte, in order
     *     (state_schemas.cassandra_rows.TABLES: the numbering lives there only)
     * @param username null for no authentication (then password must be null too); a refused login fails the
     *     writer at once (not retried), naming the user and the settings, never the password
     * @param maxInFlight write requests in flight at most; {@code write} blocks at the bound
     * @param rowsPerBatch rows per unlogged batch request
     * @param writeTimeoutSeconds how long a failing request (or the first connection) is retried
     *     before the job fails and restarts from its last checkpoint
     */
    public CassandraRowsSink(
            String name,
            List<String> contactPoints,
            int port,
            String localDatacenter,
            String keyspace,
            List<String> tables,
            String username,
            String password,
            int maxInFlight,
            int rowsPerBatch,
            double writeTimeoutSeconds) {
        this.name = require(name, "name");
        if (contactPoints == null || contactPoints.isEmpty()) {
            throw new IllegalArgumentException("Cassandra sink '" + name + "': no contact points given");
        }
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("Cassandra sink '" + name + "': port " + port + " is not 1..65535");
        }
        if (tables == null || tables.isEmpty() || tables.size() > 256) {
            throw new IllegalArgumentException("Cassandra sink '" + name + "': give 1..256 table names, one per table number");
        }
        if ((username == null) != (password == null)) {
            throw new IllegalArgumentException(
                    "Cassandra sink '" + name + "': give both a username and a password, or neither");
        }
        if (maxInFlight < 1 || rowsPerBatch < 1 || !(writeTimeoutSeconds > 0)) {
            throw new IllegalArgumentException("Cassandra sink '" + name + "': maxInFlight (" + maxInFlight
                    + "), rowsPerBatch (" + rowsPerBatch + ") and writeTimeoutSeconds (" + writeTimeoutSeconds
                    + ") must be positive");
        }
        this.contactPoints = new ArrayList<>(contactPoints);
        this.port = port;
        this.localDatacenter = localDatacenter == null || localDatacenter.isEmpty() ? DEFAULT_DATACENTER : localDatacenter;
        this.keyspace = require(keyspace, "keyspace");
        this.tables = new ArrayList<>(tables);
        this.username = username;
        this.password = password;
        this.maxInFlight = maxInFlight;
        this.rowsPerBatch = rowsPerBatch;
        this.writeTimeoutSeconds = writeTimeoutSeconds;
    }

    @Override
    public SinkWriter<byte[]> createWriter(WriterInitContext context) throws IOException {
        return new CassandraRowsWriter(this, context.metricGroup().addGroup("liverec"));
    }

    /** Never shows the password. */
    @Override
    public String toString() {
        return "CassandraRowsSink{" + name + " -> " + contactPoints + ":" + port + "/" + keyspace + " " + tables
                + ", dc=" + localDatacenter + ", user=" + (username == null ? "none" : username) + "}";
    }

    private static String require(String value, String what) {
        if (value == null || value.isEmpty()) {
            throw new IllegalArgumentException("Cassandra sink: " + what + " must not be empty");
        }
        return value;
    }
}
