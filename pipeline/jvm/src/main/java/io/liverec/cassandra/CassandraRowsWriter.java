package io.liverec.cassandra;

import com.datastax.oss.driver.api.core.AllNodesFailedException;
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.DriverException;
import com.datastax.oss.driver.api.core.auth.AuthenticationException;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.cql.BatchStatement;
import com.datastax.oss.driver.api.core.cql.BatchableStatement;
import com.datastax.oss.driver.api.core.cql.DefaultBatchType;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.cql.Statement;
import com.datastax.oss.driver.api.core.servererrors.QueryValidationException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.ThreadSafeSimpleCounter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes the rows of RowBatch records as unlogged batches, asynchronously, and waits for them in
 * {@link #flush}.
 *
 * <p><b>When Flink calls flush.</b> For a plain {@code Sink} (no committer) Flink 2.2.1 runs this writer in
 * {@code SinkWriterOperator} (flink-runtime, org.apache.flink.streaming.runtime.operators.sink), which calls
 * {@code flush(false)} in {@code prepareSnapshotPreBarrier}, i.e. before the checkpoint barrier is passed on
 * and before the operator's snapshot, and {@code flush(true)} in {@code endInput} at the end of a bounded
 * input. So every row handed to {@link #write} before a barrier is acknowledged by Cassandra before that
 * checkpoint can complete. (With unaligned checkpoints the records still queued in front of the writer are
 * stored in the checkpoint and replayed, so they are not lost either.)
 *
 * <p><b>Failures.</b> A failed request is retried after 50 ms, doubling up to 2 s, while it holds its
 * in-flight permit (so a Cassandra outage back-pressures the job). A request still failing after the write
 * timeout, or refused as invalid by Cassandra (a bad column or JSON value: a bug in what the job writes,
 * which no retry fixes), makes the next {@link #write} or {@link #flush} throw: the job fails over and
 * restarts from its last checkpoint, so nothing a completed checkpoint covers is ever dropped.
 *
 * <p><b>Metrics</b> (an interface: dashboards use these names), in the group {@code liverec} of the sink
 * writer's operator metric group:
 *
 * <ul>
 *   <li>{@code cassandra_rows_written} (counter): rows acknowledged by Cassandra;
 *   <li>{@code cassandra_write_errors} (counter): failed attempts of write requests (a request is a batch of
 *       up to rowsPerBatch rows), whether retried or not;
 *   <li>{@code cassandra_write_retries} (counter): attempts re-sent after a failure (errors minus retries
 *       = requests given up on, each of which fails the job);
 *   <li>{@code cassandra_in_flight} (gauge): write requests sent and not yet acknowledged, retries included;
 *   <li>{@code cassandra_write_latency_ms} (gauge): mean time from first send to acknowledgement of the
 *       requests acknowledged in the last full 10 s window (retries included; 0 when none);
 *   <li>{@code cassandra_write_latency_max_ms} (gauge): the largest of those.
 * </ul>
 */
public final class CassandraRowsWriter implements SinkWriter<byte[]> {
    private static final Logger LOG = LoggerFactory.getLogger(CassandraRowsWriter.class);
    private static final long FIRST_BACKOFF_MS = 50;
    private static final long MAX_BACKOFF_MS = 2_000;
    private static final long LATENCY_WINDOW_MS = 10_000;

    private final CassandraRowsSink config;
    private final String who;
    private final long timeoutNanos;
    private final CqlSession session;
    private final PreparedStatement[] inserts;
    private final Semaphore permits;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final AtomicReference<IOException> failure = new AtomicReference<>();
    private final ScheduledExecutorService retryTimer;
    private final LatencyWindow latency = new LatencyWindow(LATENCY_WINDOW_MS);
    private final Counter rowsWritten;
    private final Counter writeErrors;
    private final Counter writeRetries;

    /**
     * Opens the session, retrying the connection until the write timeout (a restart waits for Cassandra); a
     * refused login throws at once.
     */
    public CassandraRowsWriter(CassandraRowsSink config, MetricGroup metrics) throws IOException {
        this.config = config;
        this.who = "Cassandra sink '" + config.name + "'";
        this.timeoutNanos = (long) (config.writeTimeoutSeconds * 1e9);
        this.inserts = new PreparedStatement[config.tables.size()];
        this.permits = new Semaphore(config.maxInFlight);
        this.rowsWritten = metrics.counter("cassandra_rows_written", new ThreadSafeSimpleCounter());
        this.writeErrors = metrics.counter("cassandra_write_errors", new ThreadSafeSimpleCounter());
        this.writeRetries = metrics.counter("cassandra_write_retries", new ThreadSafeSimpleCounter());
        metrics.gauge("cassandra_in_flight", (Gauge<Integer>) inFlight::get);
        metrics.gauge("cassandra_write_latency_ms", (Gauge<Double>) latency::mean);
        metrics.gauge("cassandra_write_latency_max_ms", (Gauge<Long>) latency::max);
        this.session = retrying("connect to Cassandra at " + config.contactPoints + ":" + config.port
                + " (is it up?)", this::connect);
        this.retryTimer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "liverec-cassandra-retry-" + config.name);
            t.setDaemon(true);
            return t;
        });
    }

    private CqlSession connect() {
        // Per-attempt timeout: a hung request is retried like a failed one, and never outlives the write timeout.
        Duration requestTimeout = Duration.ofMillis(Math.max(1_000, Math.min(10_000, timeoutNanos / 1_000_000)));
        // The driver reads its defaults from reference.conf through this class loader: Flink loads this jar in
        // a user-code class loader, which is not the thread's context class loader everywhere.
        ClassLoader loader = CassandraRowsWriter.class.getClassLoader();
        DriverConfigLoader driverConfig = DriverConfigLoader.programmaticBuilder(loader)
                .withDuration(DefaultDriverOption.REQUEST_TIMEOUT, requestTimeout)
                .withString(DefaultDriverOption.SESSION_NAME, "liverec-" + config.name)
                .build();
        List<InetSocketAddress> points = new ArrayList<>();
        for (String host : config.contactPoints) {
            points.add(new InetSocketAddress(host, config.port));
        }
        var builder = CqlSession.builder()
                .withClassLoader(loader)
                .withConfigLoader(driverConfig)
                .addContactPoints(points)
                .withLocalDatacenter(config.localDatacenter);
        if (config.username != null) {
            builder = builder.withAuthCredentials(config.username, config.password);
        }
        return builder.build();
    }

    @Override
    public void write(byte[] element, Context context) throws IOException, InterruptedException {
        throwIfFailed();
        List<RowBatch.Row> rows = RowBatch.decode(element, inserts.length);
        List<BatchableStatement<?>> batch = new ArrayList<>(Math.min(rows.size(), config.rowsPerBatch));
        for (RowBatch.Row row : rows) {
            batch.add(insert(row.table()).bind(row.json(), row.writeTs()));
            if (batch.size() == config.rowsPerBatch) {
                send(batch);
                batch = new ArrayList<>(config.rowsPerBatch);
            }
        }
        if (!batch.isEmpty()) {
            send(batch);
        }
    }

    /** Blocks until every row handed to {@link #write} before it is acknowledged (or one failed for good). */
    @Override
    public void flush(boolean endOfInput) throws IOException, InterruptedException {
        throwIfFailed();
        // Every request holds one permit until it is acknowledged or given up: all permits = none in flight.
        permits.acquire(config.maxInFlight);
        permits.release(config.maxInFlight);
        throwIfFailed();
    }

    @Override
    public void close() throws Exception {
        try {
            if (failure.get() == null && permits.tryAcquire(config.maxInFlight, timeoutNanos, TimeUnit.NANOSECONDS)) {
                permits.release(config.maxInFlight);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt(); // cancelled: in-flight rows are replayed after the restart
        } finally {
            retryTimer.shutdownNow();
            session.close();
        }
    }

    /** Rows acknowledged so far (the value of the {@code cassandra_rows_written} counter). */
    public long rowsWritten() {
        return rowsWritten.getCount();
    }

    /** Failed attempts so far ({@code cassandra_write_errors}). */
    public long writeErrors() {
        return writeErrors.getCount();
    }

    /** Re-sent attempts so far ({@code cassandra_write_retries}). */
    public long writeRetries() {
        return writeRetries.getCount();
    }

    /** Requests in flight now ({@code cassandra_in_flight}). */
    public int inFlight() {
        return inFlight.get();
    }

    private PreparedStatement insert(int table) throws IOException {
        PreparedStatement p = inserts[table];
        if (p == null) {
            // DEFAULT UNSET: a column the JSON leaves out keeps its value and gets no tombstone.
            String cql = "INSERT INTO " + config.keyspace + "." + config.tables.get(table)
                    + " JSON ? DEFAULT UNSET USING TIMESTAMP ?";
            p = retrying("prepare " + cql, () -> session.prepare(cql));
            inserts[table] = p;
        }
        return p;
    }

    private void send(List<BatchableStatement<?>> rows) throws InterruptedException {
        Statement<?> statement = rows.size() == 1
                ? rows.get(0).setIdempotent(true)
                : BatchStatement.newInstance(DefaultBatchType.UNLOGGED, rows).setIdempotent(true);
        permits.acquire(); // back-pressure: the task thread waits here while maxInFlight requests are out
        inFlight.incrementAndGet();
        new Request(statement, rows.size()).attempt();
    }

    private void throwIfFailed() throws IOException {
        IOException e = failure.get();
        if (e != null) {
            throw new IOException(e.getMessage(), e);
        }
    }

    /** Runs {@code action} until it succeeds; a driver error is retried each second until the write timeout. */
    private <T> T retrying(String what, Supplier<T> action) throws IOException {
        long deadline = System.nanoTime() + timeoutNanos;
        while (true) {
            try {
                return action.get();
            } catch (QueryValidationException e) {
                throw new IOException(who + ": cannot " + what + ": " + e.getMessage(), e);
            } catch (DriverException e) {
                String refused = refusedLogin(e);
                if (refused != null) {
                    throw new IOException(who + ": Cassandra at " + config.contactPoints + ":" + config.port
                            + " " + refused, e);
                }
                if (System.nanoTime() > deadline) {
                    throw new IOException(String.format("%s: could not %s for %.0fs (%s: %s)",
                            who, what, config.writeTimeoutSeconds, e.getClass().getSimpleName(), e.getMessage()), e);
                }
                LOG.warn("{}: cannot {} yet, retrying: {}", who, what, e.toString());
                try {
                    Thread.sleep(1_000);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw new IOException(who + ": interrupted while trying to " + what, ie);
                }
            }
        }
    }

    /**
     * What to tell the operator when {@code e} is a refused or missing login, else null (retry it).
     *
     * <p>A wrong password is not an outage: retrying it for the write timeout only delays the failure. "Unable
     * to perform authentication" (the server's auth tables unavailable) stays an outage and is retried. The
     * messages name the user and the settings, never the password.
     */
    private String refusedLogin(DriverException e) {
        if (!(e instanceof AllNodesFailedException)) {
            return null;
        }
        for (List<Throwable> errors : ((AllNodesFailedException) e).getAllErrors().values()) {
            for (Throwable error : errors) {
                for (Throwable t = error; t != null; t = t.getCause()) {
                    String msg = String.valueOf(t.getMessage());
                    if (t instanceof AuthenticationException && !msg.contains("Unable to perform authentication")) {
                        String settings = "LIVEREC_CASSANDRA_USERNAME and LIVEREC_CASSANDRA_PASSWORD "
                                + "(or LIVEREC_CASSANDRA_PASSWORD_FILE)";
                        return config.username == null
                                ? "requires a login (" + msg + "): set " + settings
                                : "refused the login of user '" + config.username + "' (" + msg + "): check " + settings;
                    }
                }
            }
        }
        return null;
    }

    /** One write request (a batch or a single row) until it is acknowledged or given up. */
    private final class Request {
        private final Statement<?> statement;
        private final int rows;
        private final long sentNanos = System.nanoTime();
        private long firstFailureNanos;
        private boolean failedBefore;
        private long backoffMs = FIRST_BACKOFF_MS;

        Request(Statement<?> statement, int rows) {
            this.statement = statement;
            this.rows = rows;
        }

        void attempt() {
            try {
                session.executeAsync(statement).whenComplete((result, error) -> {
                    if (error == null) {
                        succeeded();
                    } else {
                        failed(error);
                    }
                });
            } catch (RuntimeException e) {
                failed(e);
            }
        }

        private void succeeded() {
            rowsWritten.inc(rows);
            latency.record((System.nanoTime() - sentNanos) / 1_000_000);
            done();
        }

        private void failed(Throwable error) {
            writeErrors.inc();
            Throwable cause = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
            long now = System.nanoTime();
            if (!failedBefore) {
                failedBefore = true;
                firstFailureNanos = now;
            }
            if (cause instanceof QueryValidationException) {
                giveUp(new IOException(String.format(
                        "%s: Cassandra refused a request of %d rows (%s: %s). The rows do not match the table "
                                + "(state_schemas/cassandra_rows.py documents their JSON); not retried, the job fails",
                        who, rows, cause.getClass().getSimpleName(), cause.getMessage()), cause));
                return;
            }
            if (now - firstFailureNanos + backoffMs * 1_000_000 > timeoutNanos) {
                giveUp(new IOException(String.format(
                        "%s: a write of %d rows kept failing for %.0fs (last: %s: %s); the job fails and restarts "
                                + "from its last checkpoint. Check Cassandra is up at %s:%d and has a datacenter "
                                + "'%s' (LIVEREC_CASSANDRA_LOCAL_DC).",
                        who, rows, config.writeTimeoutSeconds, cause.getClass().getSimpleName(), cause.getMessage(),
                        config.contactPoints, config.port, config.localDatacenter), cause));
                return;
            }
            if (backoffMs == FIRST_BACKOFF_MS) {
                LOG.warn("{}: a write of {} rows failed, retrying with back-off: {}", who, rows, cause.toString());
            }
            writeRetries.inc();
            try {
                retryTimer.schedule(this::attempt, backoffMs, TimeUnit.MILLISECONDS);
            } catch (RejectedExecutionException e) {
                giveUp(new IOException(who + ": writer closed while a write was being retried", cause));
                return;
            }
            backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
        }

        private void giveUp(IOException e) {
            if (failure.compareAndSet(null, e)) {
                LOG.error(e.getMessage(), e.getCause());
            }
            done();
        }

        private void done() {
            inFlight.decrementAndGet();
            permits.release();
        }
    }

    /** Mean and max of the latencies recorded in the last full window (what the gauges show). */
    static final class LatencyWindow {
        private final long windowNanos;
        private long start = System.nanoTime();
        private long sum;
        private long count;
        private long max;
        private double lastMean;
        private long lastMax;

        LatencyWindow(long windowMs) {
            this.windowNanos = windowMs * 1_000_000;
        }

        synchronized void record(long ms) {
            roll();
            sum += ms;
            count++;
            max = Math.max(max, ms);
        }

        synchronized double mean() {
            roll();
            return lastMean;
        }

        synchronized long max() {
            roll();
            return lastMax;
        }

        private void roll() {
            long elapsed = System.nanoTime() - start;
            if (elapsed < windowNanos) {
                return;
            }
            // The window that just ended is the last full one only if no whole empty window followed it.
            boolean recent = elapsed < 2 * windowNanos;
            lastMean = recent && count > 0 ? (double) sum / count : 0.0;
            lastMax = recent ? max : 0;
            start += (elapsed / windowNanos) * windowNanos;
            sum = 0;
            count = 0;
            max = 0;
        }
    }
}
