import CowTraceFormat

/// Streaming replay: the records are read twice (a recording is not held in
/// memory) and never sorted as a whole.
///
/// 1. `ReplayPrepass` reads them once, in file order, for what the replay
///    must know before it starts: the frame runs of the pageRun records
///    (`SharedFrameNumbers`), the gap times, the successful mprotect calls,
///    how far the records are from time order, and the records that are out
///    of it (`LateRecords`, taken aside).
/// 2. `TraceReplayer.replay(_:visiting:)` reads them again (`ReplayFeed`):
///    `TimeOrderMerger` puts the late records back in their place in time,
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
        let worker = ModelWorker { steps, others in
            var other = 0
            for step in steps {
                if step.kind == .other {
                    self.apply(step, other: others[other])
                    other += 1
                } else {
                    self.apply(step, other: nil)
                }
            }
        }
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
        switch step.kind {
        case .fault:
            replayFault(step.record.fault, verdict: step.verdict)
            if machine.oomEvents.count != modelOOMEventsSeen { noteModelOOM() }
        case .resolve:
            break   // folded into the verdicts (VerdictQueue)
        case .other:
            apply(other!, verdict: step.verdict)
        case .pageRun:
            replayPageRun(step.record.pageRun)
            if machine.oomEvents.count != modelOOMEventsSeen { noteModelOOM() }
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
    /// Unretained: `replay(_:visiting:)` holds the worker for as long as the feed is fed.
    private let worker: Unmanaged<ModelWorker>
    /// This feed, unretained, for the merger's and the queue's closures: a closure
    /// capturing `self`, even unowned, retained and released it per record
    /// (a third of the reading thread's reference counting).
    private var unretained: Unmanaged<ReplayFeed> { Unmanaged.passUnretained(self) }

    init(_ prepass: ReplayPrepass, _ worker: ModelWorker) {
        var others = OtherRecords()
        merger = TimeOrderMerger(prepass) { late in
            switch late {
            case .stream(let record): record
            case .other(let record): StreamRecord(record) { others.addLate($0) }
            }
        }
        self.others = others
        self.worker = Unmanaged.passUnretained(worker)
    }

    public func visit(fault f: FaultRecord) {
        let me = unretained
        let emit = { (r: StreamRecord) in me._withUnsafeGuaranteedRef { $0.enqueue(r) } }
        switch merger.pass(time: f.time, emit) {
        case .straight: enqueue(StreamRecord(fault: f))
        case .takenAside: return
        case .merge: merger.add(StreamRecord(fault: f), time: f.time, emit)
        }
    }

    public func visit(resolve r: ResolveRecord) {
        let me = unretained
        let emit = { (r: StreamRecord) in me._withUnsafeGuaranteedRef { $0.enqueue(r) } }
        switch merger.pass(time: r.time, emit) {
        // A resolve only re-classifies its thread's open fault (`VerdictQueue.add`).
        case .straight: queue.add(resolve: r)
        case .takenAside: return
        case .merge: merger.add(StreamRecord(resolve: r), time: r.time, emit)
        }
    }

    public func visit(_ record: TraceRecord) {
        switch record {
        case .fault(let f): visit(fault: f)
        case .resolve(let r): visit(resolve: r)
        default:
            let me = unretained
            let emit = { (r: StreamRecord) in me._withUnsafeGuaranteedRef { $0.enqueue(r) } }
            // Stored only when it goes on: one taken aside by the prepass (`LateRecords`) went out in its place in time.
            switch merger.pass(time: record.time, emit) {
            case .straight: enqueue(stream(record))
            case .takenAside: return
            case .merge: merger.add(stream(record), time: record.time, emit)
            }
        }
    }

    /// A record other than a fault or resolve as it goes on: a pageRun record
    /// whole, any other by its number in the store.
    @inline(__always)
    func stream(_ record: TraceRecord) -> StreamRecord {
        StreamRecord(record) { others.add($0) }
    }

    func finish() {
        let me = unretained
        merger.finish { r in me._withUnsafeGuaranteedRef { $0.enqueue(r) } }
        queue.finish { step in me._withUnsafeGuaranteedRef { $0.handOver(step) } }
    }

    @inline(__always)
    private func enqueue(_ record: StreamRecord) {
        let me = unretained
        queue.add(record, other: record.kind == .other ? others.peek(record.otherNumber) : nil) { step in
            me._withUnsafeGuaranteedRef { $0.handOver(step) }
        }
    }

    @inline(__always)
    private func handOver(_ step: ReplayStep) {
        if step.kind == .other {
            let other = others.take(step.record.otherNumber)
            worker._withUnsafeGuaranteedRef { $0.send(step, other: other) }
        } else {
            worker._withUnsafeGuaranteedRef { $0.send(step) }
        }
    }
}

/// One time-ordered record for the model, with the kernel's verdict on it (a
/// fault's). 40 bytes: the verdict's flags and `open` sit in the record's
/// tail padding and the verdict's time after it, no optional (a record and an
/// optional verdict side by side took 64); the verdict queue holds one per
/// record behind an open fault, and the model's batches carry one per record
/// from one CPU to the other.
struct ReplayStep {
    var record: StreamRecord
    private var cls: ReplayClass = .reuse
    private var inferred = false
    private var hasVerdict = false
    /// The verdict queue's mark on a fault whose kernel class is still open:
    /// nothing from it on is handed over. (In the queue's own entry beside
    /// the step, it made each held record 48 bytes.)
    var open = false
    private var verdictEnd: UInt64 = .max

    @inline(__always)
    init(record: StreamRecord, verdict: TraceReplayer.KernelVerdict?) {
        self.record = record
        self.verdict = verdict
    }

    var kind: StreamRecord.Kind { record.kind }

    var verdict: TraceReplayer.KernelVerdict? {
        @inline(__always) get {
            guard hasVerdict else { return nil }
            return TraceReplayer.KernelVerdict(cls: cls, inferred: inferred, end: verdictEnd == .max ? nil : verdictEnd)
        }
        @inline(__always) set {
            hasVerdict = newValue != nil
            cls = newValue?.cls ?? .reuse
            inferred = newValue?.inferred ?? false
            verdictEnd = newValue?.end ?? .max
        }
    }
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
    var chunkMinimum: [UInt64] {
        get {
            var minimum = closedMinimum
            if openMinimum != .max, !minimum.isEmpty { minimum[minimum.count - 1] = min(minimum[minimum.count - 1], openMinimum) }
            return minimum
        }
        set {
            closedMinimum = newValue
            openMinimum = .max
        }
    }
    /// `chunkMinimum` but for the records of the last chunk after its first,
    /// whose smallest key is `openMinimum`: per record, only a number changes
    /// (an array written per record cost a uniqueness check, 40 % of the prepass).
    private var closedMinimum: [UInt64] = []
    private var openMinimum: UInt64 = .max
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
    /// The records whose key is below an earlier record's, taken aside as they are read
    /// (`LateRecords`): the rest of the file is then in time order as it stands.
    var late = LateRecords()
    /// The largest key so far (of this part's records, in a later part).
    private var largestKey: UInt64 = 0
    /// A later part's first timed records not taken aside (at most `headLimit`),
    /// with their keys: those below the earlier part's largest key are late in
    /// the whole file, which only the join (`append`) can tell. Past them, the
    /// part's kept keys do not decrease, so no later one can be.
    private var keptHead = LateRecords()
    private var keptHeadOverflowed = false
    static let headLimit = 1 << 14

    /// What `count` found a record to be.
    private enum Disposition {
        case late
        case kept
        /// Kept in this part, but its place is settled by the join (`keptHead`).
        case head
    }

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
        // The later part's late records are late in the whole file too (its largest key
        // so far is at most the whole file's). Its leading untimed records take this
        // part's last key: late if that is below this part's largest (then the merger
        // buffers chunks). Its first timed records not taken aside are late too while
        // below this part's largest key (`keptHead`).
        if later.leadingUntimed > 0 && lastKey < largestKey { late.giveUp() }
        let head = later.keptHead
        var settled = false
        for i in 0..<head.count {
            guard head.keys[i] < largestKey else {
                settled = true
                break
            }
            late.add(head.records[i], key: head.keys[i], position: head.positions[i])
        }
        if !settled && later.keptHeadOverflowed { late.giveUp() }
        late.append(later.late)
        largestKey = max(largestKey, later.largestKey)
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

    /// Counts a record with time `time` (nil: the time of the one before it), and
    /// says whether its key is below an earlier record's (it is late, `LateRecords`).
    @inline(__always)
    private mutating func count(time: UInt64?) -> Disposition {
        let previousKey = lastKey
        if let t = time { lastKey = t }
        if lastKey < previousKey { inOrder = false }
        var key = lastKey
        var leading = false
        if firstKey == nil {
            if isLaterPart && time == nil {
                // Its key is the last of the part before: set by `append`.
                leadingUntimed += 1
                key = .max
                leading = true
            } else {
                firstKey = lastKey
            }
        }
        if records % ReplayPrepass.chunkSize == 0 {
            if openMinimum != .max, !closedMinimum.isEmpty {
                closedMinimum[closedMinimum.count - 1] = min(closedMinimum[closedMinimum.count - 1], openMinimum)
            }
            openMinimum = .max
            closedMinimum.append(key)
        } else {
            openMinimum = min(openMinimum, key)
        }
        records += 1
        // A later part's leading untimed records are judged by `append`.
        if leading { return .kept }
        if key < largestKey { return .late }
        largestKey = key
        guard isLaterPart, !keptHeadOverflowed else { return .kept }
        guard keptHead.count < ReplayPrepass.headLimit else {
            keptHeadOverflowed = true
            return .kept
        }
        return .head
    }

    /// Takes the record just counted aside, or into `keptHead`, as `count` said.
    @inline(__always)
    private mutating func place(_ disposition: Disposition, _ record: @autoclosure () -> LateRecords.Record) {
        switch disposition {
        case .kept: return
        case .late: late.add(record(), key: lastKey, position: records - 1)
        case .head: keptHead.add(record(), key: lastKey, position: records - 1)
        }
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
        place(count(time: f.time), .stream(StreamRecord(fault: f)))
        if f.kind == .writeProtect && f.faultClass == .sharedWrite { sawSharedWriteClass = true }
    }

    public mutating func visit(resolve r: ResolveRecord) {
        place(count(time: r.time), .stream(StreamRecord(resolve: r)))
    }

    public mutating func visit(_ record: TraceRecord) {
        place(count(time: record.time), .other(record))
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
/// before it).
///
/// When the prepass took the late records aside (`LateRecords`), the rest of
/// the file is in time order as it stands: each record it reads goes out after
/// the late records that sort before it, and the late ones go out from the
/// list, not where the file has them. Nothing is held but that list.
///
/// Otherwise (too many late records) it holds about a chunk of records when
/// the recording is nearly in order (it is in order within a block): at the
/// end of each chunk the records buffered whose key is at most the smallest
/// key of every later chunk (`ReplayPrepass.chunkMinimum`) go out: a later
/// record sorts after them.
struct TimeOrderMerger<Record> {
    private let inOrder: Bool
    /// Whether the late records were taken aside (then no chunk is buffered).
    private let mergesLate: Bool
    /// The late records in (key, position) order, with their keys and positions.
    private var lateKeys: [UInt64] = []
    private var latePositions: [Int] = []
    private var lateRecords: [Record] = []
    /// Index in the late lists of the next to hand over.
    private var lateNext = 0
    /// The positions of the late records in the file, ascending, and the next to come.
    private var takenAside: [Int] = []
    private var takenAsideNext = 0
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

    /// `late` makes a `Record` of a late record; without it, or when the prepass
    /// could not take every late record aside, the merger buffers chunks.
    init(_ prepass: ReplayPrepass, late: ((LateRecords.Record) -> Record)? = nil) {
        inOrder = prepass.inOrder
        mergesLate = !inOrder && late != nil && prepass.late.isComplete
        if mergesLate, let late {
            let taken = prepass.late
            let order = taken.order()
            lateKeys.reserveCapacity(order.count)
            latePositions.reserveCapacity(order.count)
            lateRecords.reserveCapacity(order.count)
            for i in order {
                lateKeys.append(taken.keys[Int(i)])
                latePositions.append(taken.positions[Int(i)])
                lateRecords.append(late(taken.records[Int(i)]))
            }
            // In file order (a later part's first kept records may join the list after its late ones).
            takenAside = taken.positions.sorted()
            laterMinimum = []
            return
        }
        var minimum = prepass.chunkMinimum
        if !inOrder {
            for i in minimum.indices.reversed().dropFirst() { minimum[i] = min(minimum[i], minimum[i + 1]) }
        }
        laterMinimum = minimum
    }

    /// Where the next record goes (`pass`).
    enum Passage {
        /// Out now, by the caller: the late records due before it went out first.
        case straight
        /// Taken aside by the prepass: skipped here, it went out in its place in time.
        case takenAside
        /// To the chunk merger: the caller `add`s it.
        case merge
    }

    /// Counts the next record, with time `time`, for a caller that hands it
    /// over itself when it can (a record need not be made for the merger).
    /// Nothing is counted when it answers `.merge`.
    @inline(__always)
    mutating func pass(time: UInt64?, _ emit: (Record) -> Void) -> Passage {
        if inOrder { return .straight }
        guard mergesLate else { return .merge }
        if let t = time { lastKey = t }
        let position = index
        index += 1
        if takenAsideNext < takenAside.count && takenAside[takenAsideNext] == position {
            takenAsideNext += 1
            return .takenAside
        }
        while lateNext < lateKeys.count
                && (lateKeys[lateNext] < lastKey || (lateKeys[lateNext] == lastKey && latePositions[lateNext] < position)) {
            emit(lateRecords[lateNext])
            lateNext += 1
        }
        return .straight
    }

    /// Adds a record with time `time` (nil: none, it keeps the time of the one before it).
    /// A record taken aside by the prepass is skipped: it went out in its place in time.
    @inline(__always)
    mutating func add(_ record: Record, time: UInt64?, _ emit: (Record) -> Void) {
        switch pass(time: time, emit) {
        case .straight: return emit(record)
        case .takenAside: return
        case .merge: break
        }
        if let t = time { lastKey = t }
        keys.append(lastKey)
        records.append(record)
        index += 1
        guard index % ReplayPrepass.chunkSize == 0 else { return }
        let chunk = index / ReplayPrepass.chunkSize
        flush(upTo: chunk < laterMinimum.count ? laterMinimum[chunk] : .max, emit)
    }

    mutating func finish(_ emit: (Record) -> Void) {
        if mergesLate {
            while lateNext < lateRecords.count {
                emit(lateRecords[lateNext])
                lateNext += 1
            }
            lateRecords = []
            return
        }
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

/// The records of a recording whose key (time) is below that of an earlier
/// record in the file: a CPU's last batch of events written when recording
/// ends, a ring drained after another's. The prepass takes them aside as it
/// reads; what is left of the file is in time order as it stands, so the
/// second read holds nothing but these (`TimeOrderMerger`) where it held
/// every record after the first late one's time. A file with more than
/// `limit` of them (badly out of order) is merged by chunks instead.
struct LateRecords {
    /// At most this many (about 6 MiB); more, and the merger buffers chunks.
    static let limit = 1 << 17

    enum Record {
        case stream(StreamRecord)
        case other(TraceRecord)
    }

    /// Keys, positions in the file and records, in file order.
    private(set) var keys: [UInt64] = []
    private(set) var positions: [Int] = []
    private(set) var records: [Record] = []
    /// False when not every late record was taken aside.
    private(set) var isComplete = true

    var count: Int { records.count }

    mutating func add(_ record: Record, key: UInt64, position: Int) {
        guard isComplete else { return }
        guard records.count < LateRecords.limit else { return giveUp() }
        keys.append(key)
        positions.append(position)
        records.append(record)
    }

    /// Not every late record could be taken aside: the merger buffers chunks.
    mutating func giveUp() {
        isComplete = false
        keys = []
        positions = []
        records = []
    }

    /// Adds the late records of the part of the file right after this one's.
    mutating func append(_ later: LateRecords) {
        guard isComplete, later.isComplete, count + later.count <= LateRecords.limit else { return giveUp() }
        keys += later.keys
        positions += later.positions
        records += later.records
    }

    /// Their indices in (key, position) order: the order they go out in.
    func order() -> [Int32] {
        var order = Array(0..<Int32(count))
        keys.withUnsafeBufferPointer { k in
            order.sort { a, b in k[Int(a)] != k[Int(b)] ? k[Int(a)] < k[Int(b)] : a < b }
        }
        return order
    }
}

/// Holds the time-ordered records from each fault whose kernel class is still
/// open (`KernelFaultFold`: until its thread's next fault or exit) until it is
/// closed, and hands each record over with the kernel's verdict on it.
struct VerdictQueue {
    typealias Apply = (ReplayStep) -> Void
    private(set) var fold = KernelFaultFold()
    /// The records held (from `base`), as the steps they go out as (the
    /// verdict set when their fault closes, `open` until then: 40 bytes each;
    /// a parent's open fault holds every record of the child it forked behind
    /// it), in chunks of `ChunkedEntries.chunkSize`:
    /// a chunk is freed once every entry in it went out, so the memory of the
    /// records a parent's open fault held comes back as they are handed over,
    /// instead of staying with the queue while the model's batches fill.
    private let entries = ChunkedEntries<ReplayStep>()
    /// Entries held (from `base`), and the index of the next to hand over.
    private var count = 0
    private var head = 0
    /// Time-order position (resolves not counted) of the entry at index 0.
    private var base = 0
    /// Records added, resolves not counted.
    private var added = 0

    /// Adds a resolve: it only re-classifies its thread's open fault, nothing to replay, nor to hold.
    @inline(__always)
    mutating func add(resolve r: ResolveRecord) {
        fold.feed(resolve: r)
    }

    /// Adds a record; `other`: the record itself when it is an other record
    /// (a pageRun record, carried whole, closes and opens no fault).
    mutating func add(_ record: StreamRecord, other: TraceRecord?, _ apply: Apply) {
        // A resolve only re-classifies its thread's open fault: nothing to replay, nor to hold.
        if record.kind == .resolve { return fold.feed(resolve: record.resolve) }
        let opens = record.kind == .fault && record.faultKind != .firstTouchRead
        // At most one fault closes per record (its thread's previous one): its
        // index and verdict noted (the fold is being changed), then set.
        var closedIndex = -1
        var closedVerdict: TraceReplayer.KernelVerdict? = nil
        let position = added
        added += 1
        // The same closure written twice: a local function capturing the two
        // variables was a heap-boxed context per record (callgrind, storm:
        // the reading thread 462 M -> 802 M instructions).
        if record.kind == .fault {
            fold.feed(fault: record.fault, at: position) { i, f in
                closedIndex = i
                closedVerdict = f.map(VerdictQueue.verdict)
            }
        } else if record.kind == .other {
            fold.feed(other!, at: position) { i, f in
                closedIndex = i
                closedVerdict = f.map(VerdictQueue.verdict)
            }
        }
        if closedIndex >= 0 { close(closedIndex, closedVerdict) }
        // Nothing open before it, and it opens nothing: straight through.
        if !opens && count == 0 { return apply(ReplayStep(record: record, verdict: nil)) }
        if count == 0 { base = position }
        var step = ReplayStep(record: record, verdict: nil)
        step.open = opens
        append(step)
        handOver(apply)
    }

    mutating func finish(_ apply: Apply) {
        var closed: [(index: Int, fault: ClassifiedFault?)] = []
        fold.finish { closed.append(($0, $1)) }
        for c in closed { close(c.index, c.fault.map(VerdictQueue.verdict)) }
        handOver(apply)
    }

    @inline(__always)
    private static func verdict(_ f: ClassifiedFault) -> TraceReplayer.KernelVerdict {
        TraceReplayer.KernelVerdict(cls: ReplayClass(kernel: f.faultClass), inferred: f.inferred,
                                    resolvedAt: f.resolvedAt, overBy: f.overBy)
    }

    @inline(__always)
    private mutating func append(_ entry: ReplayStep) {
        entries.slot(count).initialize(to: entry)
        count += 1
    }

    @inline(__always)
    private mutating func close(_ index: Int, _ verdict: TraceReplayer.KernelVerdict?) {
        let e = entries[index - base]
        if let verdict { e.pointee.verdict = verdict }
        e.pointee.open = false
    }

    /// Hands over the records before the first still-open fault.
    @inline(__always)
    private mutating func handOver(_ apply: Apply) {
        while head < count {
            let e = entries[head]
            guard !e.pointee.open else { break }
            apply(e.pointee)
            head += 1
            if head == ChunkedEntries<ReplayStep>.chunkSize && count > head {
                // The first chunk went out: freed, the others move down.
                entries.dropFirstChunk()
                base += head
                count -= head
                head = 0
            }
        }
        if head == count {
            // Empty: one chunk kept for the next records held.
            entries.keepOneChunk()
            count = 0
            head = 0
        }
    }
}

/// Plain values (no reference to retain: they are never deinitialized) in chunks of `chunkSize`, reached by
/// index through a pointer: no array's uniqueness check per access. The
/// chunks are allocated as the indices reach them; `dropFirstChunk` frees
/// the first and moves the indices down by a chunk.
final class ChunkedEntries<Element> {
    static var chunkShift: Int { 12 }
    static var chunkSize: Int { 1 << chunkShift }
    private var chunks: [UnsafeMutablePointer<Element>] = []

    init() { precondition(_isPOD(Element.self), "ChunkedEntries never deinitializes its elements") }

    deinit { for c in chunks { c.deallocate() } }

    /// The element at `index` (of a chunk allocated by `slot`).
    @inline(__always)
    subscript(index: Int) -> UnsafeMutablePointer<Element> {
        chunks[index >> Self.chunkShift] + (index & (Self.chunkSize - 1))
    }

    /// The element at `index`, to be initialized: its chunk is allocated when
    /// `index` is the first of a chunk not allocated yet (indices are taken in order).
    @inline(__always)
    func slot(_ index: Int) -> UnsafeMutablePointer<Element> {
        if index & (Self.chunkSize - 1) == 0, index >> Self.chunkShift == chunks.count {
            chunks.append(.allocate(capacity: Self.chunkSize))
        }
        return self[index]
    }

    func dropFirstChunk() {
        chunks.removeFirst().deallocate()
    }

    /// Frees every chunk but the first.
    func keepOneChunk() {
        while chunks.count > 1 { chunks.removeLast().deallocate() }
    }
}
