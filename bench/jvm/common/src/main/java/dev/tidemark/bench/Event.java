package dev.tidemark.bench;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;

/**
 * One record of {@code log-events}, checked the way tidemark checks it: valid events carry their
 * id and event time, invalid ones the reason tidemark would give. A public class with public
 * fields and a no-argument constructor, so Flink handles it as a POJO rather than through Kryo.
 */
public class Event {
    /** tidemark's defaults for {@code [event]}: the same limits, so the same records are invalid. */
    public static final String ID_FIELD = "eventId";
    public static final String TIME_FIELD = "timestamp";
    public static final int MAX_EVENT_BYTES = 1 << 20;
    public static final int MAX_ID_BYTES = 128;
    public static final long MAX_FUTURE_SKEW_MS = 10 * 60 * 1000;

    private static final JsonFactory JSON = new JsonFactory();

    /** The id, or null when the record is invalid. */
    public String id;
    /** Event time, epoch milliseconds. */
    public long time;
    /** The record's bytes, passed through unchanged. */
    public byte[] payload;
    /** Why the record is invalid, as tidemark's {@code tidemark-reason} names it; null if valid. */
    public String reason;
    /** What exactly was wrong. */
    public String detail;
    /** The origin region, the {@code tidemark-region} header (one shared String per input). */
    public String region;
    /**
     * Where it was read, the {@code tidemark-source} header "cluster/topic/partition/offset":
     * the input's index, partition and offset as numbers, the text built only when the header is
     * written. A String per record would be an allocation and a copy on every hop.
     */
    public int input;
    public int sourcePartition;
    public long sourceOffset;
    /** The watermark a late event missed; 0 when it is not late. */
    public long watermark;
    /** Wall-clock time of a late event's arrival. */
    public long arrivalMs;
    /** The output partition the job chose for it. */
    public int partition;

    public Event() {}

    public boolean valid() {
        return reason == null;
    }

    /** Checks one record read at wall-clock time {@code nowMs}. */
    public static Event check(byte[] bytes, long nowMs, String region, int input, int partition, long offset) {
        Event e = new Event();
        e.payload = bytes;
        e.region = region;
        e.input = input;
        e.sourcePartition = partition;
        e.sourceOffset = offset;
        if (bytes.length > MAX_EVENT_BYTES) {
            return e.invalid("too_large", bytes.length + " bytes, limit " + MAX_EVENT_BYTES);
        }
        if (!utf8(bytes)) {
            return e.invalid("not_utf8", "invalid UTF-8");
        }
        String id = null;
        boolean idSeen = false;
        JsonToken idToken = null;
        JsonToken timeToken = null;
        String timeText = null;
        long timeValue = 0;
        try (JsonParser p = JSON.createParser(bytes)) {
            JsonToken top = p.nextToken();
            if (top != JsonToken.START_OBJECT) {
                p.skipChildren();
                if (p.nextToken() != null) {
                    return e.invalid("not_json", "trailing bytes after the document");
                }
                return e.invalid("not_object", "the document is not a JSON object");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken v = p.nextToken();
                if (ID_FIELD.equals(name)) {
                    idSeen = true;
                    idToken = v;
                    id = v == JsonToken.VALUE_STRING ? p.getText() : null;
                } else if (TIME_FIELD.equals(name)) {
                    timeToken = v;
                    if (v == JsonToken.VALUE_STRING) {
                        timeText = p.getText();
                    } else if (v == JsonToken.VALUE_NUMBER_INT) {
                        timeText = p.getText();
                        timeValue = p.getNumberType() == JsonParser.NumberType.BIG_INTEGER
                                ? Long.MAX_VALUE : p.getLongValue();
                    }
                }
                p.skipChildren();
            }
            if (p.nextToken() != null) {
                return e.invalid("not_json", "trailing bytes after the object");
            }
        } catch (java.io.IOException ex) {
            return e.invalid("not_json", String.valueOf(ex.getMessage()).lines().findFirst().orElse(""));
        }
        if (!idSeen) {
            return e.invalid("id_missing", "no \"" + ID_FIELD + "\" field");
        }
        if (id == null) {
            return e.invalid("id_not_string", "\"" + ID_FIELD + "\" is " + idToken);
        }
        if (id.isEmpty()) {
            return e.invalid("id_empty", "\"" + ID_FIELD + "\" is empty");
        }
        if (id.length() > MAX_ID_BYTES / 3 && id.getBytes(StandardCharsets.UTF_8).length > MAX_ID_BYTES) {
            return e.invalid("id_too_long", "\"" + ID_FIELD + "\" is over " + MAX_ID_BYTES + " bytes");
        }
        long time;
        if (timeToken == null) {
            return e.invalid("time_missing", "no \"" + TIME_FIELD + "\" field");
        } else if (timeToken == JsonToken.VALUE_NUMBER_INT) {
            if (timeValue < 0) {
                return e.invalid("time_negative", timeText + " is before 1970");
            }
            time = timeValue;
        } else if (timeToken == JsonToken.VALUE_STRING) {
            try {
                time = OffsetDateTime.parse(timeText).toInstant().toEpochMilli();
            } catch (DateTimeParseException | ArithmeticException ex) {
                return e.invalid("time_unparseable", "\"" + timeText + "\": not RFC 3339");
            }
            if (time < 0) {
                return e.invalid("time_negative", "\"" + timeText + "\" is before 1970");
            }
        } else {
            return e.invalid("time_unparseable", "\"" + TIME_FIELD + "\" is " + timeToken);
        }
        if (time > nowMs + MAX_FUTURE_SKEW_MS) {
            return e.invalid("future_timestamp", time + " is beyond the allowed skew");
        }
        e.id = id;
        e.time = time;
        return e;
    }

    private Event invalid(String reason, String detail) {
        this.reason = reason;
        this.detail = detail;
        return this;
    }

    /** ASCII is the common case and needs no decoder. */
    private static boolean utf8(byte[] b) {
        for (byte c : b) {
            if (c < 0) {
                try {
                    StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(b));
                    return true;
                } catch (CharacterCodingException ex) {
                    return false;
                }
            }
        }
        return true;
    }

    /**
     * The headers tidemark writes on an event (ordered or late) and on an invalid record;
     * {@code inputs} names each input as "cluster/topic", indexed by {@link #input}.
     */
    public String[][] headers(String[] inputs) {
        String source = inputs[input] + "/" + sourcePartition + "/" + sourceOffset;
        if (!valid()) {
            return new String[][] {
                {"tidemark-region", region}, {"tidemark-source", source},
                {"tidemark-reason", reason}, {"tidemark-detail", detail},
            };
        }
        if (watermark == 0) {
            return new String[][] {
                {"tidemark-region", region}, {"tidemark-source", source},
                {"tidemark-event-time", Long.toString(time)},
            };
        }
        return new String[][] {
            {"tidemark-region", region}, {"tidemark-source", source},
            {"tidemark-event-time", Long.toString(time)},
            {"tidemark-watermark", Long.toString(watermark)},
            {"tidemark-lateness-ms", Long.toString(watermark - time)},
            {"tidemark-arrival-ms", Long.toString(arrivalMs)},
        };
    }

    /** An output partition from the id, the same for every copy of an event. */
    public static int partitionOf(String id, int partitions) {
        return Math.floorMod(id.hashCode(), partitions);
    }
}
