package io.liverec.cassandra;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Reader of RowBatch v1 records, the contract between the job's Python operators and this sink.
 *
 * <p>The layout is documented (and written) by {@code state_schemas/cassandra_rows.py}:
 *
 * <pre>
 *   tag u8 'W', version u16 = 1, N u32, then N times:
 *     table u8, write_ts i64, L u32, L bytes of UTF-8 JSON (CQL INSERT ... JSON form)
 * </pre>
 *
 * <p>Little endian throughout. A record that does not match throws an {@link IOException} naming the
 * format: a foreign record on the sink's input is a deployment bug and must fail the job loudly.
 */
public final class RowBatch {
    static final int TAG = 'W';
    static final int VERSION = 1;
    /** How errors name the format: the Python codec's name and the record's name. */
    static final String FORMAT = "RowBatch ('cassandra_rows' v1, tag 'W')";

    private static final int HEADER_BYTES = 7;
    private static final int ROW_HEADER_BYTES = 13;

    private RowBatch() {}

    /** One upsert: the table's number, its USING TIMESTAMP and its JSON text. */
    public record Row(int table, long writeTs, String json) {}

    /**
     * The rows of one RowBatch record.
     *
     * @param tables how many tables the sink knows (a row naming another is malformed)
     */
    public static List<Row> decode(byte[] data, int tables) throws IOException {
        if (data == null) {
            throw malformed("got a null record");
        }
        ByteBuffer buf = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (data.length < HEADER_BYTES) {
            throw malformed("record of " + data.length + " bytes is shorter than the 7-byte header");
        }
        int tag = buf.get() & 0xFF;
        int version = buf.getShort() & 0xFFFF;
        long n = buf.getInt() & 0xFFFFFFFFL;
        if (tag != TAG) {
            throw malformed(String.format(
                    "expected tag 'W' (0x57), got 0x%02x: the stream feeding the Cassandra sink carries another format",
                    tag));
        }
        if (version != VERSION) {
            throw malformed("version " + version + ", this sink reads " + VERSION
                    + ": the producer and the sink come from different builds");
        }
        var utf8 = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        List<Row> rows = new ArrayList<>((int) Math.min(n, buf.remaining() / ROW_HEADER_BYTES));
        for (long i = 0; i < n; i++) {
            if (buf.remaining() < ROW_HEADER_BYTES) {
                throw malformed("announces " + n + " rows, it ends inside row " + i);
            }
            int table = buf.get() & 0xFF;
            long writeTs = buf.getLong();
            long size = buf.getInt() & 0xFFFFFFFFL;
            if (table >= tables) {
                throw malformed("row " + i + " names table " + table + ", this sink knows 0.." + (tables - 1));
            }
            if (size > buf.remaining()) {
                throw malformed("row " + i + " of " + size + " bytes overruns the record");
            }
            ByteBuffer text = buf.slice(buf.position(), (int) size);
            buf.position(buf.position() + (int) size);
            String json;
            try {
                json = utf8.decode(text).toString();
            } catch (CharacterCodingException e) {
                throw malformed("row " + i + " is not UTF-8 (" + e + ")");
            }
            rows.add(new Row(table, writeTs, json));
        }
        if (buf.hasRemaining()) {
            throw malformed(buf.remaining() + " unexpected trailing bytes after " + n + " rows");
        }
        return rows;
    }

    private static IOException malformed(String why) {
        return new IOException("malformed " + FORMAT + " record: " + why);
    }
}
