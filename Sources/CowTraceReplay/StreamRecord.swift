import CowTraceFormat

/// A record on its way through the streaming replay (`TimeOrderMerger`,
/// `VerdictQueue`, the model's batches): a plain value, copied as bytes, with
/// no reference to retain. Faults, resolves and pageRun records, nearly every
/// record, are carried whole; any other record waits in an `OtherRecords`
/// store and is carried by its number there.
struct StreamRecord {
    enum Kind: UInt8 { case fault, resolve, other, pageRun }

    // 28 bytes: the fields in this order leave no padding. A fault's ip is
    // not carried (the replay does not use it).
    var time: UInt64
    /// A fault's or resolve's address; an other record's number in its store.
    var address: UInt64
    var pid: Int32
    var tid: Int32
    var kind: Kind
    var faultKind: RecordedFaultKind
    var faultClass: FaultClass
    var mapping: RecordedMappingKind

    @inline(__always)
    init(fault f: FaultRecord) {
        time = f.time; address = f.address; pid = f.pid; tid = f.tid
        kind = .fault; faultKind = f.kind; faultClass = f.faultClass; mapping = f.mapping
    }

    @inline(__always)
    init(resolve r: ResolveRecord) {
        time = r.time; address = r.address; pid = r.pid; tid = r.tid
        kind = .resolve; faultKind = .writeProtect; faultClass = r.faultClass; mapping = .unknown
    }

    /// The other record number `number` of an `OtherRecords` store.
    @inline(__always)
    init(other number: Int) {
        time = 0; address = UInt64(number); pid = 0; tid = 0
        kind = .other; faultKind = .writeProtect; faultClass = .unresolved; mapping = .unknown
    }

    /// A pageRun record, carried whole: its frame in `time` with its flags
    /// in the top byte, its count in `tid`. A snapshot has one for each run
    /// of pages on consecutive frames, all of them before the first fault:
    /// the reader runs ahead of the model through them, and as other
    /// records (the record boxed, in the store, then in the model's batch
    /// beside its step) each took about 140 bytes while in flight, 40 here.
    /// Nil for a frame number of 56 bits or more (pagemap's have 55 at
    /// most): such a record goes as an other record.
    @inline(__always)
    init?(pageRun r: PageRunRecord) {
        guard r.frame >> 56 == 0 else { return nil }
        time = r.frame | UInt64(r.flags.rawValue) << 56; address = r.address; pid = r.pid
        tid = Int32(bitPattern: r.count)
        kind = .pageRun; faultKind = .writeProtect; faultClass = .unresolved; mapping = .unknown
    }

    /// `record`, neither a fault nor a resolve, as it goes on: a pageRun
    /// record whole, any other by the number `store` gives it.
    @inline(__always)
    init(_ record: TraceRecord, storing store: (TraceRecord) -> Int) {
        if case .pageRun(let r) = record, let whole = StreamRecord(pageRun: r) {
            self = whole
        } else {
            self.init(other: store(record))
        }
    }

    var pageRun: PageRunRecord {
        PageRunRecord(pid: pid, address: address, count: UInt32(bitPattern: tid),
                      flags: PageRunFlags(rawValue: UInt8(truncatingIfNeeded: time >> 56)),
                      frame: time & (1 << 56 - 1))
    }

    /// The fault record, its ip 0 (not carried).
    var fault: FaultRecord {
        FaultRecord(time: time, pid: pid, tid: tid, address: address, ip: 0, kind: faultKind,
                    faultClass: faultClass, mapping: mapping)
    }

    var resolve: ResolveRecord {
        ResolveRecord(time: time, pid: pid, tid: tid, address: address, faultClass: faultClass)
    }

    var otherNumber: Int { Int(address) }
}

/// The records other than faults and resolves between their decoding and
/// their hand-over to the model, by number (given in order). They leave
/// nearly in the order they came, so the store is an array whose front is
/// dropped once half of it is gone: its size is what the merger and the
/// verdict queue hold.
struct OtherRecords {
    private var records: [TraceRecord?] = []
    /// The number of `records[0]`.
    private var base = 0
    /// Index in `records` before which every record was taken.
    private var head = 0

    /// Stores `record`; returns its number.
    mutating func add(_ record: TraceRecord) -> Int {
        records.append(record)
        return base + records.count - 1
    }

    /// Late records (`LateRecords`), numbered from `lateBase` on: they are
    /// stored when the merger starts and taken in time order, not file order,
    /// so they are kept apart from the others.
    private var late: [TraceRecord?] = []
    static let lateBase = 1 << 56

    /// Stores the late record `record`; returns its number.
    mutating func addLate(_ record: TraceRecord) -> Int {
        late.append(record)
        return OtherRecords.lateBase + late.count - 1
    }

    /// The record number `number` (stored, not taken).
    func peek(_ number: Int) -> TraceRecord {
        number >= OtherRecords.lateBase ? late[number - OtherRecords.lateBase]! : records[number - base]!
    }

    /// Takes the record number `number` out.
    mutating func take(_ number: Int) -> TraceRecord {
        if number >= OtherRecords.lateBase { return late[number - OtherRecords.lateBase].take()! }
        let i = number - base
        let record = records[i].take()!
        while head < records.count && records[head] == nil { head += 1 }
        if head == records.count {
            base += records.count
            records.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= records.count {
            records.removeFirst(head)
            base += head
            head = 0
        }
        return record
    }

    /// Records stored and not taken yet, or taken behind one still stored.
    var count: Int { records.count - head }
}
