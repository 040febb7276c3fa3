import CowTraceFormat
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a closure on each step it is sent, in the order sent, on a thread of
/// its own: the replay's second CPU. Reading, merging and folding the records
/// (the sending thread) and replaying them through the model (this thread)
/// take about as long each, so on two CPUs a replay takes the longer of the
/// two instead of their sum. Steps go over in batches (`batchSize`), at most
/// `maxBatches` of them in flight: memory stays bounded however far the model
/// falls behind, and the emptied batches are handed back to be refilled.
/// Neither thread is the slower one throughout: the reader stalls while a
/// fault's class is open (`VerdictQueue` holds what follows it) or the merger
/// waits for a late block, the model while it catches up. 32 batches (131 k
/// steps, ~8 MB) let the reader run that far ahead instead of waiting for
/// the model, then get through its next stall while the model works: check on
/// the CoW-storm recording, 0.28 s with 4 batches, 0.23 s with 32 (64: no faster).
///
/// The closure is the only code that runs on the worker's thread; the sender
/// must not touch what it touches until `finish` has returned.
final class ModelWorker {
    static var batchSize: Int { 4096 }
    static var maxBatches: Int { 32 }
    /// Applies a batch of steps, in order, with the records of its steps of
    /// other records than faults and resolves, in the same order: one call per
    /// batch, so the per-step work is inlined where the closure is written.
    typealias Body = (_ steps: UnsafeBufferPointer<ReplayStep>, _ others: [TraceRecord]) -> Void

    private let channel: BatchChannel<ModelBatch>
    private var batch = ModelBatch()
    private var thread: pthread_t?
    private let body: Body

    /// `body` gets the steps a batch at a time.
    init(_ body: @escaping Body) {
        self.body = body
        channel = BatchChannel(capacity: Self.maxBatches)
        // Without a thread, the steps are applied on the sender's thread (`send`).
        thread = startThread { [channel, body] in ModelWorker.run(channel, body) }
    }

    /// Hands a fault's or resolve's step over; blocks while `maxBatches` batches wait for the worker.
    @inline(__always)
    func send(_ step: ReplayStep) {
        guard thread != nil else { return withUnsafePointer(to: step) { body(UnsafeBufferPointer(start: $0, count: 1), []) } }
        batch.append(step)
        if batch.count == Self.batchSize { flush() }
    }

    /// Hands the step of another record over, with the record.
    func send(_ step: ReplayStep, other: TraceRecord) {
        guard thread != nil else {
            return withUnsafePointer(to: step) { body(UnsafeBufferPointer(start: $0, count: 1), [other]) }
        }
        batch.others.append(other)
        batch.append(step)
        if batch.count == Self.batchSize { flush() }
    }

    /// Hands over the last steps and waits until every step was applied.
    func finish() {
        guard let t = thread else { return }
        if batch.count > 0 { flush() }
        channel.close()
        pthread_join(t, nil)
        thread = nil
    }

    private func flush() {
        let full = batch
        batch = channel.recycled() ?? ModelBatch()
        channel.send(full)
    }

    private static func run(_ channel: BatchChannel<ModelBatch>, _ body: Body) {
        while let batch = channel.receive() {
            body(UnsafeBufferPointer(start: batch.steps, count: batch.count), batch.others)
            batch.count = 0
            batch.others.removeAll(keepingCapacity: true)
            channel.recycle(batch)
        }
    }
}

/// Steps for the model, plain values (`batchSize` of them at most, written
/// through a pointer: no array's uniqueness and capacity checks per step);
/// the records of its steps of other records than faults and resolves, in
/// the same order, aside.
final class ModelBatch {
    let steps = UnsafeMutablePointer<ReplayStep>.allocate(capacity: ModelWorker.batchSize)
    var count = 0
    var others: [TraceRecord] = []

    deinit { steps.deallocate() }

    @inline(__always)
    func append(_ step: ReplayStep) {
        (steps + count).initialize(to: step)
        count += 1
    }
}

/// Runs `body` on a new thread (to be joined with `pthread_join`); nil when none could be made.
func startThread(_ body: @escaping () -> Void) -> pthread_t? {
    let context = Unmanaged.passRetained(ThreadEntry(body)).toOpaque()
    var t = pthread_t()
    guard pthread_create(&t, nil, { context in
        Unmanaged<ThreadEntry>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context) == 0 else {
        Unmanaged<ThreadEntry>.fromOpaque(context).release()
        return nil
    }
    return t
}

/// What a new thread runs (a C thread entry captures nothing).
private final class ThreadEntry {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// A bounded first-in first-out queue of batches between two threads (a
/// mutex and a condition variable), with the emptied batches handed back.
final class BatchChannel<Batch> {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let capacity: Int
    private var full: [Batch?] = []
    private var head = 0
    private var empty: [Batch] = []
    private var closed = false

    init(capacity: Int) {
        self.capacity = capacity
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Queues a batch; blocks while `capacity` batches are queued.
    func send(_ batch: Batch) {
        pthread_mutex_lock(mutex)
        while full.count - head >= capacity { pthread_cond_wait(changed, mutex) }
        full.append(batch)
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// The oldest batch queued; blocks while none is; nil once closed and drained.
    func receive() -> Batch? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == full.count && !closed { pthread_cond_wait(changed, mutex) }
        guard head < full.count else { return nil }
        let batch = full[head].take()!
        head += 1
        // Taken slots are dropped once as many as the capacity have piled up
        // (a sender always ahead never lets the queue drain).
        if head == full.count {
            full.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= capacity {
            full.removeFirst(head)
            head = 0
        }
        pthread_cond_broadcast(changed)
        return batch
    }

    /// Hands an emptied batch back to the sender, its capacity to be reused.
    func recycle(_ batch: Batch) {
        pthread_mutex_lock(mutex)
        empty.append(batch)
        pthread_mutex_unlock(mutex)
    }

    /// An emptied batch handed back, if any.
    func recycled() -> Batch? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return empty.popLast()
    }

    /// No more batches: `receive` returns nil once the queued ones are taken.
    func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }
}
