package dev.tidemark.bench;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * S5, Flink's side: what its dedup state costs per live id, and what a large state does to its
 * rate. The engine chain without Kafka, like {@code tidemark bench --state}: a generator of
 * ~300-byte JSON events with random 128-bit ids (the shape tidemark's generator writes), the same
 * checks as FlinkJob, bounded out-of-orderness watermarks, and FlinkJob's keyed dedup on the
 * default heap state backend, into a discarding sink. Parallelism 2.
 *
 * <p>The state is measured while the job still holds it: the generator makes one event more
 * than {@code --events}, and that last one waits until this process has seen the others leave
 * the dedup, run a full GC and read the heap in
 * use and the resident memory. A {@code --kind live} run keeps every id (TTL one day); a
 * {@code --kind baseline} run lets each expire after a millisecond, and the difference between
 * the two is the state.
 *
 * <p>Prints {@code S5 flink KIND EVENTS SECONDS IDS HEAP_BYTES RSS_BYTES PEAK_RSS_BYTES}, the
 * line {@code tidemark bench --state} prints, with the heap in use after a full GC as the state.
 *
 * <p>No checkpoints: tidemark does not snapshot its dedup set, and a snapshot of tens of
 * millions of ids would measure the snapshot rather than the state.
 */
public final class FlinkStateJob {
    /** Events through the dedup, per subtask, each in its own cache line. */
    static final AtomicLongArray DONE = new AtomicLongArray(64 * 16);
    static final AtomicLong FIRST_NANOS = new AtomicLong();
    static final CountDownLatch MEASURED = new CountDownLatch(1);

    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv);
        long n = Long.parseLong(args.get("events"));
        String kind = args.get("kind");
        if (!kind.equals("live") && !kind.equals("baseline")) {
            throw new IllegalArgumentException("--kind is live or baseline, not " + kind);
        }
        long ttl = kind.equals("live") ? 24 * 3600 * 1000L : 1;
        int parallelism = args.getInt("parallelism", 2);
        if (n < 1) {
            throw new IllegalArgumentException("--events must be at least 1");
        }

        Configuration conf = new Configuration();
        // A failure ends the run with its cause instead of restarting it out of sight.
        conf.setString("restart-strategy.type", "none");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);

        long base = System.currentTimeMillis() - n / 8 - 60_000;
        env.fromSequence(0, n)
                .map(new Generate(n, base)).name("generate")
                .assignTimestampsAndWatermarks(WatermarkStrategy
                        .<Event>forBoundedOutOfOrderness(Duration.ofSeconds(2))
                        .withTimestampAssigner((e, ts) -> e.valid() ? e.time : Long.MIN_VALUE))
                .keyBy(e -> e.id)
                .process(new Counted(ttl, 8)).name("dedup")
                .sinkTo(new DiscardingSink<>());

        JobClient job = env.executeAsync("s5");
        // Every event but the held last one has left the dedup; bounded, in case it never does.
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(30);
        while (done(parallelism) < n) {
            if (System.nanoTime() > deadline || job.getJobStatus().get().isGloballyTerminalState()) {
                throw new IllegalStateException("the dedup saw " + done(parallelism) + " of " + n + " events");
            }
            Thread.sleep(5);
        }
        double seconds = (System.nanoTime() - FIRST_NANOS.get()) / 1e9;
        System.gc();
        System.gc();
        long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
        long rss = statusKb("VmRSS:") * 1024;
        long hwm = statusKb("VmHWM:") * 1024;
        MEASURED.countDown();
        job.getJobExecutionResult().get();
        System.out.printf("S5\tflink\t%s\t%d\t%.3f\t%d\t%d\t%d\t%d%n", kind, n, seconds,
                kind.equals("live") ? n : 0, heap, rss, hwm);
        System.out.printf("read %d records in %.2f s (%.0f records/s), first event to the last through the dedup%n",
                n, seconds, n / seconds);
    }

    static long done(int parallelism) {
        long sum = 0;
        for (int i = 0; i < parallelism; i++) {
            sum += DONE.get(i * 16);
        }
        return sum;
    }

    static long statusKb(String key) throws java.io.IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith(key)) {
                return Long.parseLong(line.substring(key.length()).trim().split("\\s+")[0]);
            }
        }
        return 0;
    }

    /**
     * Index to a checked event: tidemark's generator's shape (32 hex digit id, epoch-ms time,
     * region, service, level, message padded to ~300 bytes), eight events per millisecond.
     */
    static final class Generate implements MapFunction<Long, Event> {
        private final long last;
        private final long base;
        private transient byte[] template;
        private transient int timeAt;

        /** Events 0..n, the last one held back. */
        Generate(long n, long base) {
            this.last = n;
            this.base = base;
        }

        @Override
        public Event map(Long i) throws Exception {
            if (i == last) {
                MEASURED.await();
            }
            FIRST_NANOS.compareAndSet(0, System.nanoTime());
            long time = base + i / 8;
            if (template == null) {
                String head = "{\"eventId\":\"" + "0".repeat(32) + "\",\"timestamp\":";
                String rest = time + ",\"region\":\"region-a\",\"service\":\"svc-07\",\"level\":\"info\",\"message\":\"";
                StringBuilder s = new StringBuilder(head).append(rest);
                String filler = "request served in time; upstream healthy; cache warm; ";
                while (s.length() < 298) {
                    s.append(filler, 0, Math.min(filler.length(), 298 - s.length()));
                }
                template = s.append("\"}").toString().getBytes(StandardCharsets.UTF_8);
                timeAt = head.length();
            }
            byte[] b = template.clone();
            // Random 128-bit ids, as tidemark's generator draws them.
            long hi = mix(i * 2 + 1);
            long lo = mix(i * 2 + 2);
            for (int d = 0; d < 16; d++) {
                b[12 + d] = HEX[(int) (hi >>> (60 - 4 * d)) & 0xf];
                b[28 + d] = HEX[(int) (lo >>> (60 - 4 * d)) & 0xf];
            }
            long t = time;
            for (int d = timeAt + 12; d >= timeAt; d--) {
                b[d] = (byte) ('0' + t % 10);
                t /= 10;
            }
            return Event.check(b, System.currentTimeMillis(), "region-a", 0, 0, i);
        }

        private static final byte[] HEX = "0123456789abcdef".getBytes(StandardCharsets.US_ASCII);

        /** SplitMix64's finaliser: distinct inputs give distinct, well-spread outputs. */
        private static long mix(long z) {
            z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
            z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
            return z ^ (z >>> 31);
        }
    }

    /** FlinkJob's dedup, counting what has gone through it for the measurement. */
    static final class Counted extends FlinkJob.Dedup {
        private transient int slot;
        private transient long count;

        Counted(long ttl, int partitions) {
            super(ttl, partitions);
        }

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
            super.open(ctx);
            slot = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask() * 16;
        }

        @Override
        public void processElement(Event e, Context ctx, org.apache.flink.util.Collector<Event> o) throws Exception {
            super.processElement(e, ctx, o);
            DONE.lazySet(slot, ++count);
        }
    }
}
