#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a closure on each step it is sent, in the order sent, on a thread of
/// its own: the replay's second CPU. Reading, merging and folding the records
/// (the sending thread) and replaying them through the model (this thread)
/// take about as long each, so on two CPUs a replay takes the longer of the
/// two instead of their sum. Items go over in batches (`batchSize`), at most
/// `maxBatches` of them in flight: memory stays bounded however far the model
/// falls behind, and the emptied batch arrays are handed back to be refilled.
///
/// The closure is the only code that runs on the worker's thread; the sender
/// must not touch what it touches until `finish` has returned.
final class ModelWorker {
    /// Not generic: a generic worker's items are copied through value
    /// witnesses (and their metadata looked up at run time), per item.
    typealias Item = ReplayStep
    static var batchSize: Int { 4096 }
    static var maxBatches: Int { 4 }

    private let channel: BatchChannel<ReplayStep>
    private var batch: [Item]
    private var thread: pthread_t?
    private let body: (Item) -> Void

    init(_ body: @escaping (Item) -> Void) {
        self.body = body
        channel = BatchChannel(capacity: Self.maxBatches)
        batch = []
        batch.reserveCapacity(Self.batchSize)
        let entry = ThreadEntry { [channel, body] in ModelWorker.run(channel, body) }
        let context = Unmanaged.passRetained(entry).toOpaque()
        var t = pthread_t()
        if pthread_create(&t, nil, { context in
            Unmanaged<ThreadEntry>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context) == 0 {
            thread = t
        } else {
            // No thread: the items are applied on the sender's thread (`send`).
            Unmanaged<ThreadEntry>.fromOpaque(context).release()
        }
    }

    /// Hands `item` over; blocks while `maxBatches` batches wait for the worker.
    @inline(__always)
    func send(_ item: Item) {
        guard thread != nil else { return body(item) }
        batch.append(item)
        if batch.count == Self.batchSize { flush() }
    }

    /// Hands over the last items and waits until every item was applied.
    func finish() {
        guard let t = thread else { return }
        if !batch.isEmpty { flush() }
        channel.close()
        pthread_join(t, nil)
        thread = nil
    }

    private func flush() {
        let full = batch
        batch = channel.recycled() ?? []
        if batch.capacity < Self.batchSize { batch.reserveCapacity(Self.batchSize) }
        channel.send(full)
    }

    private static func run(_ channel: BatchChannel<ReplayStep>, _ body: (Item) -> Void) {
        while var items = channel.receive() {
            for item in items { body(item) }
            items.removeAll(keepingCapacity: true)
            channel.recycle(items)
        }
    }
}

/// What a new thread runs (a C thread entry cannot capture a generic type).
private final class ThreadEntry {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// A bounded first-in first-out queue of batches between two threads (a
/// mutex and a condition variable), with the emptied batches handed back.
final class BatchChannel<Item> {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let capacity: Int
    private var full: [[Item]] = []
    private var head = 0
    private var empty: [[Item]] = []
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
    func send(_ batch: [Item]) {
        pthread_mutex_lock(mutex)
        while full.count - head >= capacity { pthread_cond_wait(changed, mutex) }
        full.append(batch)
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// The oldest batch queued; blocks while none is; nil once closed and drained.
    func receive() -> [Item]? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == full.count && !closed { pthread_cond_wait(changed, mutex) }
        guard head < full.count else { return nil }
        let batch = full[head]
        full[head] = []
        head += 1
        if head == full.count {
            full.removeAll(keepingCapacity: true)
            head = 0
        }
        pthread_cond_broadcast(changed)
        return batch
    }

    /// Hands an emptied batch back to the sender, its capacity to be reused.
    func recycle(_ batch: [Item]) {
        pthread_mutex_lock(mutex)
        empty.append(batch)
        pthread_mutex_unlock(mutex)
    }

    /// An emptied batch handed back, if any.
    func recycled() -> [Item]? {
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
