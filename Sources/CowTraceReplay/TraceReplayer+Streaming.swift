import CowTraceFormat

/// Streaming replay: the records are read twice (a recording is not held in
/// memory) and never sorted as a whole.
///
/// 1. `ReplayPrepass` reads them once, in file order, for what the replay
///    must know before it starts: the frame runs of the pageRun records
///    (`SharedFrameNumbers`), the gap times, the successful mprotect calls,
///    and how far the records are from time order.
/// 2. `TraceReplayer.replay(_:visiting:)` reads them again (`ReplayFeed`):
///    `TimeOrderMerger` puts them in time order with a small buffer,
///    `VerdictQueue` holds each write-protect fault until the kernel's class
///    of it is settled (by its thread's next fault or exit), and every record
///    then drives the model, on a second thread (`ModelWorker`) while this one
///    reads on. Faults and resolves go through as `StreamRecord`s, plain values.
extension TraceReplayer {
    /// Replays the records that `reading` hands over, in file order, to its
    /// closure; `reading` is called once and must hand over the records
    /// `prepass` was fed, in the same order.
    public func replay(_ prepass: consuming ReplayPrepass,
                       reading: ((TraceRecord) -> Void) throws -> Void) rethrows -> ReplayResult {
        try replay(prepass) { feed in
            try reading { feed.visit($0) }
        }
    }

    /// Replays the records that `visiting` hands to the feed, in file order
    /// (`TraceFileReader.visitRecords(path:salvage:checksums:_:)` does); it is
    /// called once and must hand over the records `prepass` was fed, in the same order.
    public func replay(_ prepass: consuming ReplayPrepass,
                       visiting: (inout ReplayFeed) throws -> Void) rethrows -> ReplayResult {
        stats.records = prepass.records
        gapTimes = prepass.gapTimes.sorted()
        mprotects = prepass.mprotects
        // Moved out, so that the runs are sorted in place and freed once counted.
        let (runStarts, runEnds) = (prepass.frameStarts, prepass.frameEnds)
        prepass.frameStarts = []
        prepass.frameEnds = []
        sharedFrameNumbers = SharedFrameNumbers(runStarts: runStarts, runEnds: runEnds)
        if faultTier == "unknown" && prepass.sawSharedWriteClass { tierSeesSharedWrites = true }

        // The model runs on a thread of its own (`ModelWorker`): from here
        // until `finish`, this thread touches the feed only.
        let worker = ModelWorker { step, other in self.apply(step, other: other) }
        defer { worker.finish() }
        var feed = ReplayFeed(prepass, worker)
        try visiting(&feed)
        feed.finish()
        worker.finish()
        stats.resolves = Int(feed.queue.fold.resolves)
        stats.unmatchedResolves = Int(feed.queue.fold.unmatchedResolves)
        return result()
    }

    /// Replays one step on the model's thread; `other`: the record when it is neither fault nor resolve.
    @inline(__always)
    func apply(_ step: ReplayStep, other: TraceRecord?) {
        switch step.record.kind {
        case .fault:
            replayFault(step.record.fault, verdict: step.verdict)
            if machine.oomEvents.count != modelOOMEventsSeen { noteModelOOM() }
        case .resolve:
            break   // folded into the verdicts (VerdictQueue)
        case .other:
            apply(other!, verdict: step.verdict)
        }
    }
}

/// Takes the records of the replay's second read in file order, as
/// `TraceFileReader.visitRecords` hands them over, through the merger and the
/// verdict queue to the model's thread.
public final class ReplayFeed: TraceRecordVisitor {
    private var merger: TimeOrderMerger<StreamRecord>
    private(set) var queue = VerdictQueue()
    private var others = OtherRecords()
    private let worker: ModelWorker

    init(_ prepass: ReplayPrepass, _ worker: ModelWorker) {
        merger = TimeOrderMerger(prepass)
        self.worker = worker
    }

    public func visit(fault f: FaultRecord) {
        merger.add(StreamRecord(fault: f), time: f.time) { self.enqueue($0) }
    }

    public func visit(resolve r: ResolveRecord) {
        merger.add(StreamRecord(resolve: r), time: r.time) { self.enqueue($0) }
    }

    public func visit(_ record: TraceRecord) {
        switch record {
        case .fault(let f): visit(fault: f)
        case .resolve(let r): visit(resolve: r)
        default:
            merger.add(StreamRecord(other: others.add(record)), time: record.time) { self.enqueue($0) }
        }
    }

    func finish() {
        merger.finish { self.enqueue($0) }
        queue.finish { self.handOver($0, $1) }
    }

    @inline(__always)
    private func enqueue(_ record: StreamRecord) {
        queue.add(record, other: record.kind == .other ? others.peek(record.otherNumber) : nil) { self.handOver($0, $1) }
    }

    @inline(__always)
    private func handOver(_ record: StreamRecord, _ verdict: TraceReplayer.KernelVerdict?) {
        let step = ReplayStep(record: record, verdict: verdict)
        if record.kind == .other {
            worker.send(step, other: others.take(record.otherNumber))
        } else {
            worker.send(step)
        }
    }
}

/// One time-ordered record for the model, with the kernel's verdict on it (a fault's).
struct ReplayStep {
    var record: StreamRecord
    var verdict: TraceReplayer.KernelVerdict?
}

/// What the replay needs to know of the whole recording before replaying its
/// first record; fed every record in file order (`feed`).
public struct ReplayPrepass {
    /// Records are merged into time order a chunk of this many at a time.
    static let chunkSize = 4096

    public private(set) var records = 0
    /// Frame runs [start, end) of the pageRun records whose pages may be shared
    /// (present, anonymous, not exclusive), unsorted.
    var frameStarts: [UInt64] = []
    var frameEnds: [UInt64] = []
    var gapTimes: [UInt64] = []
    /// Successful mprotect calls per pid (time, start, end).
    var mprotects: [Int32: [(time: UInt64, start: UInt64, end: UInt64)]] = [:]
    /// A write-protect fault record with the shared-write class (only the fentry and kprobe tiers see those).
    var sawSharedWriteClass = false
    /// The smallest sort key (`TimeOrderMerger`) of each chunk of records.
    var chunkMinimum: [UInt64] = []
    /// Whether the sort keys never decrease (no merging needed).
    var inOrder = true
    private var lastKey: UInt64 = 0
    /// The key of the first record fed (nil before); in a later part, of the first with a time.
    private var firstKey: UInt64?
    /// A later part of the file (`init(recordsBefore:)`), whose records before its
    /// first with a time have the key of the part before it, not known here.
    private var isLaterPart = false
    /// The records of a later part before its first with a time.
    private var leadingUntimed = 0

    public init() {}

    /// For the records after the first `recordsBefore` (a later part of the file, `TracePart`):
    /// chunks counted from the start of the file. Joined to the earlier part's with `append`.
    init(recordsBefore: Int) {
        records = recordsBefore
        isLaterPart = true
        if recordsBefore % ReplayPrepass.chunkSize != 0 { chunkMinimum = [.max] }
    }

    /// Adds the prepass of the records right after these (`init(recordsBefore:)` with this one's
    /// `records`). The later part's records before its first with a time (mappings and page
    /// runs, when the cut fell in a snapshot) take this one's last key, as in a whole read.
    mutating func append(_ later: ReplayPrepass) {
        guard later.records > records else { return }
        var chunks = later.chunkMinimum
        if later.leadingUntimed > 0 {
            let first = records / ReplayPrepass.chunkSize
            let last = (records + later.leadingUntimed - 1) / ReplayPrepass.chunkSize
            for k in 0...(last - first) { chunks[k] = min(chunks[k], lastKey) }
        }
        if firstKey == nil { firstKey = later.leadingUntimed > 0 ? lastKey : later.firstKey }
        if let laterFirst = later.firstKey {
            if laterFirst < lastKey || !later.inOrder { inOrder = false }
            lastKey = later.lastKey
        }
        var minimum = chunks[...]
        if records % ReplayPrepass.chunkSize != 0, let m = minimum.first {
            chunkMinimum[chunkMinimum.count - 1] = min(chunkMinimum[chunkMinimum.count - 1], m)
            minimum = minimum.dropFirst()
        }
        chunkMinimum += minimum
        records = later.records
        frameStarts += later.frameStarts
        frameEnds += later.frameEnds
        gapTimes += later.gapTimes
        for (pid, calls) in later.mprotects { mprotects[pid, default: []] += calls }
        if later.sawSharedWriteClass { sawSharedWriteClass = true }
    }

    public mutating func feed(_ record: TraceRecord) {
        switch record {
        case .fault(let f): return visit(fault: f)
        case .resolve(let r): return visit(resolve: r)
        default: visit(record)
        }
    }

    /// Counts a record with time `time` (nil: the time of the one before it).
    @inline(__always)
    private mutating func count(time: UInt64?) {
        let previousKey = lastKey
        if let t = time { lastKey = t }
        if lastKey < previousKey { inOrder = false }
        var key = lastKey
        if firstKey == nil {
            if isLaterPart && time == nil {
                // Its key is the last of the part before: set by `append`.
                leadingUntimed += 1
                key = .max
            } else {
                firstKey = lastKey
            }
        }
        if records % ReplayPrepass.chunkSize == 0 {
            chunkMinimum.append(key)
        } else {
            chunkMinimum[chunkMinimum.count - 1] = min(chunkMinimum[chunkMinimum.count - 1], key)
        }
        records += 1
    }

    private mutating func addFrameRun(_ start: UInt64, _ end: UInt64) {
        guard start < end else { return }
        frameStarts.append(start)
        frameEnds.append(end)
    }
}

/// The prepass straight from the file (`TraceFileReader.visitRecords`): the
/// fault and resolve records, nearly all of them, are never made `TraceRecord`s.
extension ReplayPrepass: TraceRecordVisitor {
    public mutating func visit(fault f: FaultRecord) {
        count(time: f.time)
        if f.kind == .writeProtect && f.faultClass == .sharedWrite { sawSharedWriteClass = true }
    }

    public mutating func visit(resolve r: ResolveRecord) {
        count(time: r.time)
    }

    public mutating func visit(_ record: TraceRecord) {
        count(time: record.time)
        switch record {
        case .pageRun(let r):
            guard r.flags.contains(.present), r.frame != 0,
                  r.flags.isDisjoint(with: [.zeroPage, .fileOrShared, .exclusive]) else { return }
            let (end, wrapped) = r.frame.addingReportingOverflow(UInt64(r.count))
            if wrapped {
                addFrameRun(r.frame, .max)
                if end > 0 { addFrameRun(0, end) }
            } else {
                addFrameRun(r.frame, end)
            }
        case .gap(let g):
            gapTimes.append(g.time)
        case .addressSpace(let a) where a.op == .mprotect && a.result == 0 && a.args.count >= 2:
            mprotects[a.pid, default: []].append((a.time, a.args[0], a.args[0] &+ a.args[1]))
        case .fault(let f) where f.kind == .writeProtect && f.faultClass == .sharedWrite:
            sawSharedWriteClass = true
        default:
            break
        }
    }
}

/// Hands records over in time order, as `TraceRecord.sortedByTime` orders
/// them (stably; a mapping or pageRun record keeps the time of the record
/// before it), with a buffer of about a chunk of records when the recording is
/// nearly in order (it is in order within a block). At the end of each chunk
/// the records buffered whose key is at most the smallest key of every later
/// chunk (`ReplayPrepass.chunkMinimum`) go out: a later record sorts after them.
struct TimeOrderMerger<Record> {
    private let inOrder: Bool
    /// Per chunk, the smallest key of that chunk and every later one.
    private let laterMinimum: [UInt64]
    /// The records buffered, in the order they were added, and their keys:
    /// sorted by key (position breaking ties) through `order`, so that only
    /// 4-byte positions move in the sort, never the records.
    private var keys: [UInt64] = []
    private var records: [Record] = []
    /// Scratch for `flush`: positions in `keys` in (key, position) order.
    private var order: [Int32] = []
    private var index = 0
    private var lastKey: UInt64 = 0

    init(_ prepass: ReplayPrepass) {
        inOrder = prepass.inOrder
        var minimum = prepass.chunkMinimum
        if !inOrder {
            for i in minimum.indices.reversed().dropFirst() { minimum[i] = min(minimum[i], minimum[i + 1]) }
        }
        laterMinimum = minimum
    }

    /// Adds a record with time `time` (nil: none, it keeps the time of the one before it).
    @inline(__always)
    mutating func add(_ record: Record, time: UInt64?, _ emit: (Record) -> Void) {
        guard !inOrder else { return emit(record) }
        if let t = time { lastKey = t }
        keys.append(lastKey)
        records.append(record)
        index += 1
        guard index % ReplayPrepass.chunkSize == 0 else { return }
        let chunk = index / ReplayPrepass.chunkSize
        flush(upTo: chunk < laterMinimum.count ? laterMinimum[chunk] : .max, emit)
    }

    mutating func finish(_ emit: (Record) -> Void) {
        flush(upTo: .max, emit)
    }

    /// Hands over, in (key, order added) order, the buffered records with a key
    /// at most `limit`; the others stay, in the order they were added.
    private mutating func flush(upTo limit: UInt64, _ emit: (Record) -> Void) {
        let n = keys.count
        guard n > 0 else { return }
        let (inKeyOrder, smallest) = keys.withUnsafeBufferPointer { k in
            var inOrder = true, smallest = k[0]
            for i in 1..<k.count where k[i] < k[i - 1] {
                inOrder = false
                smallest = min(smallest, k[i])
            }
            return (inOrder, smallest)
        }
        // Nothing to hand over (a late block holds an early record): no sort,
        // which would otherwise be redone at every chunk while the buffer grows.
        guard smallest <= limit else { return }
        if inKeyOrder {
            // Already in order (a block's records are): the ones at most `limit` are a prefix.
            var m = n
            while m > 0 && keys[m - 1] > limit { m -= 1 }
            for i in 0..<m { emit(records[i]) }
            if m == n {
                keys.removeAll(keepingCapacity: true)
                records.removeAll(keepingCapacity: true)
            } else {
                keys.removeFirst(m)
                records.removeFirst(m)
            }
            return
        }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: (0..<Int32(n)))
        keys.withUnsafeBufferPointer { k in
            order.sort { a, b in k[Int(a)] != k[Int(b)] ? k[Int(a)] < k[Int(b)] : a < b }
        }
        let m = order.firstIndex { keys[Int($0)] > limit } ?? n
        for j in 0..<m { emit(records[Int(order[j])]) }
        if m == n {
            keys.removeAll(keepingCapacity: true)
            records.removeAll(keepingCapacity: true)
            return
        }
        // The records kept move down, in the order they were added.
        var handedOver = [Bool](repeating: false, count: n)
        for j in 0..<m { handedOver[Int(order[j])] = true }
        var kept = 0
        for i in 0..<n where !handedOver[i] {
            if kept != i {
                keys[kept] = keys[i]
                records.swapAt(kept, i)
            }
            kept += 1
        }
        keys.removeLast(n - kept)
        records.removeLast(n - kept)
    }
}

/// Holds the time-ordered records from each fault whose kernel class is still
/// open (`KernelFaultFold`: until its thread's next fault or exit) until it is
/// closed, and hands each record over with the kernel's verdict on it.
struct VerdictQueue {
    typealias Apply = (StreamRecord, TraceReplayer.KernelVerdict?) -> Void
    /// The verdict is stored flat (its two times first, its flags in the
    /// record's tail padding), no optional: 56 bytes an entry. A parent's open
    /// fault holds every record of the child it forked behind it.
    private struct Entry {
        private var resolvedAt: UInt64 = 0
        private var overBy: UInt64 = 0
        let record: StreamRecord
        private var cls: ReplayClass = .reuse
        private var inferred = false
        private var hasVerdict = false
        var open: Bool

        init(record: StreamRecord, open: Bool) {
            self.record = record
            self.open = open
        }

        var verdict: TraceReplayer.KernelVerdict? {
            get {
                guard hasVerdict else { return nil }
                return TraceReplayer.KernelVerdict(cls: cls, inferred: inferred, resolvedAt: resolvedAt == .max ? nil : resolvedAt,
                                                   overBy: overBy == .max ? nil : overBy)
            }
            set {
                hasVerdict = newValue != nil
                guard let v = newValue else { return }
                cls = v.cls
                inferred = v.inferred
                resolvedAt = v.resolvedAt ?? .max
                overBy = v.overBy ?? .max
            }
        }
    }
    private(set) var fold = KernelFaultFold()
    private var entries: [Entry] = []
    /// Index in `entries` of the next record to hand over.
    private var head = 0
    /// Time-order position (resolves not counted) of `entries[0]`.
    private var base = 0
    /// Records added, resolves not counted.
    private var added = 0

    /// Adds a record; `other`: the record itself when it is neither fault nor resolve.
    mutating func add(_ record: StreamRecord, other: TraceRecord?, _ apply: Apply) {
        // A resolve only re-classifies its thread's open fault: nothing to replay, nor to hold.
        if record.kind == .resolve { return fold.feed(resolve: record.resolve) }
        let opens = record.kind == .fault && record.faultKind != .firstTouchRead
        // At most one fault closes per record (its thread's previous one).
        var closed: (index: Int, fault: ClassifiedFault?)? = nil
        let position = added
        added += 1
        if record.kind == .fault {
            fold.feed(fault: record.fault, at: position) { closed = ($0, $1) }
        } else {
            fold.feed(other!, at: position) { closed = ($0, $1) }
        }
        if let closed { close(closed.index, closed.fault) }
        // Nothing open before it, and it opens nothing: straight through.
        if !opens && entries.isEmpty { return apply(record, nil) }
        if entries.isEmpty { base = position }
        entries.append(Entry(record: record, open: opens))
        handOver(apply)
    }

    mutating func finish(_ apply: Apply) {
        var closed: [(index: Int, fault: ClassifiedFault?)] = []
        fold.finish { closed.append(($0, $1)) }
        for c in closed { close(c.index, c.fault) }
        handOver(apply)
    }

    private mutating func close(_ index: Int, _ f: ClassifiedFault?) {
        let i = index - base
        if let f {
            entries[i].verdict = TraceReplayer.KernelVerdict(cls: ReplayClass(kernel: f.faultClass), inferred: f.inferred,
                                                             resolvedAt: f.resolvedAt, overBy: f.overBy)
        }
        entries[i].open = false
    }

    /// Hands over the records before the first still-open fault.
    private mutating func handOver(_ apply: Apply) {
        while head < entries.count, !entries[head].open {
            apply(entries[head].record, entries[head].verdict)
            head += 1
        }
        if head == entries.count {
            entries.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4096 && head * 2 >= entries.count {
            // Records handed over behind a fault still open: dropped once they are half the array.
            entries.removeFirst(head)
            base += head
            head = 0
        }
    }
}
