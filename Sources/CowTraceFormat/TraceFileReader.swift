import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a recording ends when it does not end cleanly.
public enum TraceCut: Equatable, Sendable {
    /// The file ends at a block boundary at `offset` (its size) without an
    /// `end` record: the recorder was killed or is still running. Not an
    /// error: every record in the file was read.
    case noEndRecord(offset: Int)
    /// Salvage mode: reading stopped at `offset` because of `problem`; the
    /// records before it were read.
    case damaged(offset: Int, problem: TraceFileError)

    public var offset: Int {
        switch self {
        case .noEndRecord(let o), .damaged(let o, _): return o
        }
    }
}

/// A whole recording, read by `TraceFileReader.read`.
public struct TraceContents: Equatable, Sendable {
    public var header: TraceHeader
    /// The record types the file says it holds (its header's schema table).
    public var schema: [TraceRecordSchema]
    public var records: [TraceRecord]
    /// Blocks read, header block included (the damaged one excluded).
    public var blocks: Int
    /// Size of the file (or byte buffer).
    public var bytes: Int
    /// Nil when the recording ends with an `end` record.
    public var cut: TraceCut?
}

/// What `TraceFileReader.forEachRecord` read.
public struct TraceSummary: Equatable, Sendable {
    public var header: TraceHeader
    public var schema: [TraceRecordSchema]
    /// Records handed to the closure.
    public var records: Int
    public var blocks: Int
    public var bytes: Int
    public var cut: TraceCut?

    public init(header: TraceHeader, schema: [TraceRecordSchema], records: Int, blocks: Int, bytes: Int, cut: TraceCut?) {
        self.header = header; self.schema = schema; self.records = records; self.blocks = blocks
        self.bytes = bytes; self.cut = cut
    }
}

/// Reads recordings written by TraceFileWriter. Never traps on any input:
/// every read is bounds-checked and every allocation is bounded by the input
/// size. Damage is a thrown TraceFileError naming the byte offset, unless
/// `salvage` is set: then the records before the damage are returned and
/// `cut` says where and why reading stopped. Damage in the preamble or the
/// header block is thrown even when salvaging (there is nothing to salvage).
public enum TraceFileReader {
    /// Reads a whole recording file (block by block; memory is the records).
    public static func read(path: String, salvage: Bool = false) throws -> TraceContents {
        var source = try FileSource(path: path)
        var sink = ArraySink(capacity: try estimatedRecords(&source))
        let summary = try decode(&source, path: path, salvage: salvage, sink: &sink)
        return TraceContents(summary, records: sink.records)
    }

    /// Reads a recording held in memory (`path` only names it in errors).
    public static func read(bytes: UnsafeRawBufferPointer, path: String = "<memory>", salvage: Bool = false) throws -> TraceContents {
        var source = MemorySource(bytes)
        var sink = ArraySink(capacity: try estimatedRecords(&source))
        let summary = try decode(&source, path: path, salvage: salvage, sink: &sink)
        return TraceContents(summary, records: sink.records)
    }

    public static func read(bytes: Data, path: String = "<memory>", salvage: Bool = false) throws -> TraceContents {
        try bytes.withUnsafeBytes { try read(bytes: $0, path: path, salvage: salvage) }
    }

    public static func read(bytes: [UInt8], path: String = "<memory>", salvage: Bool = false) throws -> TraceContents {
        try bytes.withUnsafeBytes { try read(bytes: $0, path: path, salvage: salvage) }
    }

    /// Hands every record to `body` in file order without keeping them; reads
    /// the file one block at a time (memory: one block). Errors thrown by
    /// `body` stop reading and are rethrown.
    @discardableResult
    public static func forEachRecord(path: String, salvage: Bool = false,
                                     _ body: (TraceRecord) throws -> Void) throws -> TraceSummary {
        var source = try FileSource(path: path)
        return try withoutActuallyEscaping(body) { body in
            var sink = ClosureSink(body: body)
            return try decode(&source, path: path, salvage: salvage, sink: &sink)
        }
    }

    @discardableResult
    public static func forEachRecord(bytes: UnsafeRawBufferPointer, path: String = "<memory>", salvage: Bool = false,
                                     _ body: (TraceRecord) throws -> Void) throws -> TraceSummary {
        var source = MemorySource(bytes)
        return try withoutActuallyEscaping(body) { body in
            var sink = ClosureSink(body: body)
            return try decode(&source, path: path, salvage: salvage, sink: &sink)
        }
    }

    @discardableResult
    public static func forEachRecord(bytes: Data, path: String = "<memory>", salvage: Bool = false,
                                     _ body: (TraceRecord) throws -> Void) throws -> TraceSummary {
        try bytes.withUnsafeBytes { try forEachRecord(bytes: $0, path: path, salvage: salvage, body) }
    }

    /// Hands every record to `visitor` in file order, as `forEachRecord` does,
    /// but faults and resolves (nearly every record) as their plain structs:
    /// no `TraceRecord` is made for them, and no closure is called per record.
    @discardableResult
    public static func visitRecords<V: TraceRecordVisitor>(path: String, salvage: Bool = false,
                                                           _ visitor: inout V) throws -> TraceSummary {
        var checksums = BlockChecksums()
        return try visitRecords(path: path, salvage: salvage, checksums: &checksums, &visitor)
    }

    /// `visitRecords(path:salvage:_:)`; a block whose stored payload checksum
    /// `checksums` holds as verified (by an earlier read of the same file) is
    /// not checksummed again. An empty `checksums` gets this read's.
    ///
    /// Inlinable, as is the per-record loop (`decodeRecords`): the visitor's
    /// module specializes it for its visitor, whose calls are then direct (a
    /// generic loop here called the visitor through two witness tables per
    /// record, a fifth of the replay's first pass). The blocks are checked by
    /// `decodeFile`, which is not generic.
    @inlinable @discardableResult
    public static func visitRecords<V: TraceRecordVisitor>(path: String, salvage: Bool = false,
                                                           checksums: inout BlockChecksums,
                                                           _ visitor: inout V) throws -> TraceSummary {
        var sink = VisitorSink(visitor: consume visitor)
        defer { visitor = sink.visitor }
        return try decodeFile(path: path, salvage: salvage, checksums: &checksums) { payload, offset, found, handed, sawEnd in
            try decodeRecords(payload, fileOffset: offset, found: &found, handed: &handed, sawEnd: &sawEnd, sink: &sink)
        }
    }

    /// The records of one records block's payload at `fileOffset`: `found` gets
    /// how many were decoded (records of unknown types, skipped, included: the
    /// block header counts them), `handed` how many were handed over, `sawEnd`
    /// whether one was an `end` record; the first problem is returned (the
    /// records before it were handed over).
    @usableFromInline
    typealias RecordsDecoder = (_ payload: UnsafeRawBufferPointer, _ fileOffset: Int, _ found: inout Int,
                                _ handed: inout Int, _ sawEnd: inout Bool) throws -> TraceProblem?

    /// `decode` of the file at `path`, its records blocks' payloads handed to `records`.
    @usableFromInline
    static func decodeFile(path: String, salvage: Bool, checksums: inout BlockChecksums,
                           records: RecordsDecoder) throws -> TraceSummary {
        var source = try FileSource(path: path)
        return try decode(&source, path: path, salvage: salvage, checksums: &checksums, records: records)
    }

    @discardableResult
    public static func visitRecords<V: TraceRecordVisitor>(bytes: UnsafeRawBufferPointer, path: String = "<memory>",
                                                           salvage: Bool = false, _ visitor: inout V) throws -> TraceSummary {
        var source = MemorySource(bytes)
        var sink = VisitorSink(visitor: consume visitor)
        defer { visitor = sink.visitor }
        return try decode(&source, path: path, salvage: salvage, sink: &sink)
    }

    /// The capacity to reserve for the record array: the record counts of the
    /// block headers (walked without reading payloads), so that the array is
    /// allocated once. Bounded by the input: no stored record is shorter than
    /// 14 bytes. Stops at the first block header that does not check out.
    static func estimatedRecords<S: TraceByteSource>(_ source: inout S) throws -> Int {
        let total = try blockHeaders(&source).blocks.reduce(0) { $0 + $1.records }
        return min(total, source.size / 14)
    }

    /// The blocks from the preamble on, walked by their headers without reading
    /// payloads: each block's offset and record count, up to the first header
    /// that does not check out, and the offset where the walk stopped.
    static func blockHeaders<S: TraceByteSource>(_ source: inout S) throws -> (blocks: [(offset: Int, records: Int)], end: Int) {
        let size = source.size
        var offset = TraceFormat.preambleSize
        var blocks: [(offset: Int, records: Int)] = []
        while size - offset >= TraceFormat.blockHeaderSize {
            let h = try source.bytes(at: offset, count: TraceFormat.blockHeaderSize)
            guard h.count == TraceFormat.blockHeaderSize, let hp = h.baseAddress,
                  load32(hp, 0) == TraceFormat.blockMagic, traceCRC32(hp, 28) == load32(hp, 28) else { break }
            blocks.append((offset, load32(hp, 4) == TraceFormat.recordsBlockKind ? Int(load32(hp, 20)) : 0))
            offset += TraceFormat.blockHeaderSize + Int(load32(hp, 16))
        }
        return (blocks, offset)
    }

    // MARK: decoding

    static func decode<S: TraceByteSource, K: TraceRecordSink>(
        _ source: inout S, path: String, salvage: Bool, sink: inout K
    ) throws -> TraceSummary {
        var checksums = BlockChecksums()
        return try decode(&source, path: path, salvage: salvage, checksums: &checksums, sink: &sink)
    }

    static func decode<S: TraceByteSource, K: TraceRecordSink>(
        _ source: inout S, path: String, salvage: Bool, checksums: inout BlockChecksums, sink: inout K
    ) throws -> TraceSummary {
        try decode(&source, path: path, salvage: salvage, checksums: &checksums) { payload, offset, found, handed, sawEnd in
            try decodeRecords(payload, fileOffset: offset, found: &found, handed: &handed, sawEnd: &sawEnd, sink: &sink)
        }
    }

    static func decode<S: TraceByteSource>(
        _ source: inout S, path: String, salvage: Bool, checksums: inout BlockChecksums, records: RecordsDecoder
    ) throws -> TraceSummary {
        var recordsSeen = 0
        let size = source.size
        guard size > 0 else { throw TraceFileError(path: path, problem: .empty) }
        let preamble = try source.bytes(at: 0, count: TraceFormat.preambleSize)
        let magic = TraceFormat.fileMagic
        for i in 0..<min(preamble.count, magic.count) where preamble[i] != magic[i] {
            throw TraceFileError(path: path, problem: .notCowtrace)
        }
        guard preamble.count >= TraceFormat.preambleSize else {
            throw TraceFileError(path: path, problem: .truncatedPreamble(present: preamble.count))
        }
        let version = UInt16(preamble[8]) | UInt16(preamble[9]) << 8
        guard version >= 1 && version <= TraceFormat.version else {
            throw TraceFileError(path: path, problem: .unsupportedVersion(version))
        }

        var offset = TraceFormat.preambleSize
        var expectedSequence: UInt64 = 0
        var header: TraceHeader?
        var schema: [TraceRecordSchema] = []
        var blocks = 0
        var sawEnd = false
        var cut: TraceCut?

        while offset < size {
            let problem = try readBlock(&source, at: offset, size: size, expectedSequence: expectedSequence,
                                        header: &header, schema: &schema, sawEnd: &sawEnd, checksums: &checksums,
                                        records: records, recordsSeen: &recordsSeen, nextOffset: &offset)
            if let problem = problem {
                if salvage && header != nil {
                    let at = problem.offset ?? offset
                    cut = .damaged(offset: at, problem: TraceFileError(path: path, problem: problem))
                    break
                }
                throw TraceFileError(path: path, problem: problem, recordsBefore: header != nil ? recordsSeen : nil)
            }
            blocks += 1
            expectedSequence &+= 1
        }
        guard let finalHeader = header else {
            // The file ends right after the preamble.
            let problem = TraceProblem.truncatedBlockHeader(offset: offset, present: 0)
            throw TraceFileError(path: path, problem: problem)
        }
        if cut == nil && !sawEnd { cut = .noEndRecord(offset: offset) }
        checksums.complete = true
        return TraceSummary(header: finalHeader, schema: schema, records: recordsSeen, blocks: blocks,
                            bytes: size, cut: cut)
    }

    /// Reads and checks the block at `offset`; on success advances `nextOffset`.
    static func readBlock<S: TraceByteSource>(
        _ source: inout S, at offset: Int, size: Int, expectedSequence: UInt64,
        header: inout TraceHeader?, schema: inout [TraceRecordSchema], sawEnd: inout Bool,
        checksums: inout BlockChecksums, records: RecordsDecoder, recordsSeen: inout Int, nextOffset: inout Int
    ) throws -> TraceProblem? {
        let h = try source.bytes(at: offset, count: TraceFormat.blockHeaderSize)
        guard h.count >= TraceFormat.blockHeaderSize, let hp = h.baseAddress else {
            return .truncatedBlockHeader(offset: offset, present: h.count)
        }
        let magic = load32(hp, 0)
        guard magic == TraceFormat.blockMagic else { return .badBlockMagic(offset: offset, found: magic) }
        guard traceCRC32(hp, 28) == load32(hp, 28) else { return .headerChecksum(offset: offset) }
        let kind = load32(hp, 4)
        let sequence = load64(hp, 8)
        let payloadLength = Int(load32(hp, 16))
        let recordCount = Int(load32(hp, 20))
        let payloadCRC = load32(hp, 24)
        guard payloadLength <= TraceFormat.maxPayloadBytes else {
            return .payloadTooLarge(offset: offset, declared: payloadLength)
        }
        guard sequence == expectedSequence else {
            return .sequence(offset: offset, expected: expectedSequence, found: sequence)
        }
        if header == nil && kind != TraceFormat.headerBlockKind {
            return .firstBlockNotHeader(offset: offset, kind: kind)
        }
        if header != nil && kind == TraceFormat.headerBlockKind {
            return .unexpectedHeaderBlock(offset: offset)
        }
        let payloadOffset = offset + TraceFormat.blockHeaderSize
        let present = size - payloadOffset
        guard payloadLength <= present else {
            return .truncatedBlock(offset: offset, declared: payloadLength, present: max(0, present))
        }
        let payload = try source.bytes(at: payloadOffset, count: payloadLength)
        guard payload.count == payloadLength else {
            // The file shrank while being read.
            return .truncatedBlock(offset: offset, declared: payloadLength, present: payload.count)
        }
        if !checksums.verified(block: Int(sequence), payloadCRC) {
            guard traceCRC32(payload.baseAddress, payloadLength) == payloadCRC else {
                return .payloadChecksum(offset: offset, sequence: sequence)
            }
            checksums.add(block: Int(sequence), payloadCRC)
        }
        switch kind {
        case TraceFormat.headerBlockKind:
            switch parseHeaderBlock(payload, entries: recordCount) {
            case .success(let parsed):
                header = parsed.header
                schema = parsed.schema
            case .failure(let detail):
                return .malformedHeader(offset: offset, detail: detail.text)
            }
        case TraceFormat.recordsBlockKind:
            var found = 0, handed = 0
            let problem = try records(payload, payloadOffset, &found, &handed, &sawEnd)
            recordsSeen += handed
            if let problem { return problem }
            if found != recordCount {
                return .recordCountMismatch(offset: offset, declared: recordCount, found: found)
            }
        default:
            break   // a block kind from a later version: skipped
        }
        nextOffset = payloadOffset + payloadLength
        return nil
    }

    /// Decodes the records of one payload into `sink`: `found` gets how many
    /// were decoded (a record of an unknown type, skipped, too: the block
    /// header counts it), `handed` how many went to the sink. Returns the
    /// first problem (the records before it have been handed to the sink).
    @inlinable @inline(__always)
    static func decodeRecords<K: TraceRecordSink>(
        _ payload: UnsafeRawBufferPointer, fileOffset: Int, found: inout Int, handed: inout Int, sawEnd: inout Bool,
        sink: inout K
    ) throws -> TraceProblem? {
        var n = 0, h = 0
        defer { found = n; handed = h }
        guard let p = payload.baseAddress else { return nil }
        let end = payload.count
        var i = 0
        while i < end {
            let available = end - i
            guard available >= 4 else {
                return .recordOverrun(offset: fileOffset + i, length: TraceFormat.recordHeaderSize, available: available)
            }
            let r = p + i
            let type = r.load(as: UInt8.self)
            let length = Int(load16(r, 2))
            guard length >= 4 else {
                return .recordTooShort(offset: fileOffset + i, type: type, length: length, needed: 4)
            }
            guard length <= available else {
                return .recordOverrun(offset: fileOffset + i, length: length, available: available)
            }
            if type == TraceFormat.RecordType.fault.rawValue {
                // fault: the hot path.
                guard length >= 38 else {
                    return .recordTooShort(offset: fileOffset + i, type: type, length: length, needed: 38)
                }
                guard let kind = RecordedFaultKind(rawValue: r.load(fromByteOffset: 36, as: UInt8.self)) else {
                    return .invalidValue(offset: fileOffset + i, field: "fault kind",
                                         value: UInt64(r.load(fromByteOffset: 36, as: UInt8.self)))
                }
                guard let cls = FaultClass.fromRawValue(r.load(fromByteOffset: 37, as: UInt8.self)) else {
                    return .invalidValue(offset: fileOffset + i, field: "fault class",
                                         value: UInt64(r.load(fromByteOffset: 37, as: UInt8.self)))
                }
                // The mapping byte came later: a 38-byte fault record has none.
                var mapping = RecordedMappingKind.unknown
                if length >= 39 {
                    guard let m = RecordedMappingKind(rawValue: r.load(fromByteOffset: 38, as: UInt8.self)) else {
                        return .invalidValue(offset: fileOffset + i, field: "fault mapping",
                                             value: UInt64(r.load(fromByteOffset: 38, as: UInt8.self)))
                    }
                    mapping = m
                }
                try sink.accept(fault: FaultRecord(
                    time: load64(r, 4), pid: loadI32(r, 12), tid: loadI32(r, 16),
                    address: load64(r, 20), ip: load64(r, 28), kind: kind, faultClass: cls, mapping: mapping))
                h += 1
            } else if type == TraceFormat.RecordType.resolve.rawValue {
                guard length >= 29 else {
                    return .recordTooShort(offset: fileOffset + i, type: type, length: length, needed: 29)
                }
                guard let cls = FaultClass.fromRawValue(r.load(fromByteOffset: 28, as: UInt8.self)) else {
                    return .invalidValue(offset: fileOffset + i, field: "resolve class",
                                         value: UInt64(r.load(fromByteOffset: 28, as: UInt8.self)))
                }
                try sink.accept(resolve: ResolveRecord(
                    time: load64(r, 4), pid: loadI32(r, 12), tid: loadI32(r, 16),
                    address: load64(r, 20), faultClass: cls))
                h += 1
            } else {
                switch decodeOther(r, type: type, length: length, fileOffset: fileOffset + i) {
                case .record(let record):
                    if case .end = record { sawEnd = true }
                    try sink.accept(record)
                    h += 1
                case .unknown:
                    break   // a record type from a later version: skipped by its length
                case .problem(let problem):
                    return problem
                }
            }
            i += length
            n += 1
        }
        return nil
    }

    @usableFromInline
    enum OtherResult {
        case record(TraceRecord)
        case unknown
        case problem(TraceProblem)
    }

    /// Decodes the less frequent record types. `r` points at the record
    /// header; `length` (≥ 4) bytes are readable.
    @usableFromInline
    static func decodeOther(_ r: UnsafeRawPointer, type: UInt8, length: Int, fileOffset: Int) -> OtherResult {
        guard let minimum = TraceFormat.minimumRecordLength[type] else { return .unknown }
        var needed = minimum
        guard length >= needed else {
            return .problem(.recordTooShort(offset: fileOffset, type: type, length: length, needed: needed))
        }
        var o = 4
        var tooShort = false
        // Every read below is within `needed` ≤ `length` bytes: `needed` counts
        // all fixed fields and string lengths, and grows by each string's bytes.
        func u8() -> UInt8 { defer { o += 1 }; return r.load(fromByteOffset: o, as: UInt8.self) }
        func u32() -> UInt32 { defer { o += 4 }; return load32(r, o) }
        func i32() -> Int32 { defer { o += 4 }; return loadI32(r, o) }
        func u64() -> UInt64 { defer { o += 8 }; return load64(r, o) }
        func i64() -> Int64 { defer { o += 8 }; return Int64(bitPattern: load64(r, o)) }
        func str() -> String {
            if tooShort { return "" }
            let n = Int(load16(r, o))
            needed += n
            guard needed <= length else { tooShort = true; return "" }
            let s = String(decoding: UnsafeRawBufferPointer(start: r + o + 2, count: n), as: UTF8.self)
            o += 2 + n
            return s
        }
        func short() -> OtherResult {
            .problem(.recordTooShort(offset: fileOffset, type: type, length: length, needed: needed))
        }
        func invalid(_ field: String, _ value: UInt8) -> OtherResult {
            .problem(.invalidValue(offset: fileOffset, field: field, value: UInt64(value)))
        }
        switch TraceFormat.RecordType(rawValue: type) {
        case .process?:
            let time = u64(), pid = i32(), ppid = i32(), uid = u32(), comm = str()
            if tooShort { return short() }
            let startBrk = u64(), brk = u64(), startStack = u64()
            return .record(.process(ProcessRecord(time: time, pid: pid, ppid: ppid, uid: uid, comm: comm,
                                                  startBrk: startBrk, brk: brk, startStack: startStack)))
        case .mapping?:
            let pid = i32(), start = u64(), end = u64(), permissions = str()
            if tooShort { return short() }
            let offset = u64(), inode = u64(), path = str()
            if tooShort { return short() }
            return .record(.mapping(MappingRecord(pid: pid, start: start, end: end, permissions: permissions,
                                                  offset: offset, inode: inode, path: path)))
        case .pageRun?:
            let pid = i32(), address = u64(), count = u32(), flags = u8(), frame = u64()
            return .record(.pageRun(PageRunRecord(pid: pid, address: address, count: count,
                                                  flags: PageRunFlags(rawValue: flags), frame: frame)))
        case .fork?:
            let time = u64(), parent = i32(), parentTid = i32(), child = i32(), comm = str()
            if tooShort { return short() }
            return .record(.fork(ForkEventRecord(time: time, parent: parent, parentTid: parentTid, child: child, comm: comm)))
        case .exec?:
            let time = u64(), pid = i32(), tid = i32(), comm = str()
            if tooShort { return short() }
            return .record(.exec(ExecEventRecord(time: time, pid: pid, tid: tid, comm: comm)))
        case .exit?:
            let time = u64(), pid = i32(), tid = i32(), exitCode = u32()
            return .record(.exit(ExitEventRecord(time: time, pid: pid, tid: tid, exitCode: exitCode)))
        case .addressSpace?:
            let time = u64(), pid = i32(), tid = i32(), rawOp = u8()
            guard let op = AddressSpaceOp(rawValue: rawOp) else { return invalid("address-space op", rawOp) }
            let args = [u64(), u64(), u64(), u64(), u64()]
            let result = i64()
            return .record(.addressSpace(AddressSpaceRecord(time: time, pid: pid, tid: tid, op: op, args: args, result: result)))
        case .oomKill?:
            let time = u64(), victim = i32(), comm = str()
            if tooShort { return short() }
            let uid = u32(), adj = i32()
            let total = u64(), anon = u64(), file = u64(), shmem = u64(), pgtables = u64()
            let constraint = str()
            if tooShort { return short() }
            return .record(.oomKill(OOMKillRecord(time: time, victim: victim, comm: comm, uid: uid, oomScoreAdj: adj,
                                                  totalVMKB: total, anonRSSKB: anon, fileRSSKB: file, shmemRSSKB: shmem,
                                                  pgtablesKB: pgtables, constraint: constraint)))
        case .gap?:
            let time = u64(), rawReason = u8()
            guard let reason = LossReason(rawValue: rawReason) else { return invalid("loss reason", rawReason) }
            let lost = u64()
            return .record(.gap(GapRecord(time: time, reason: reason, lost: lost)))
        case .counters?:
            let time = u64(), pid = i32(), comm = str()
            if tooShort { return short() }
            let wp = u64(), copies = u64(), zero = u64(), fileCopies = u64(), shared = u64(), thp = u64()
            let forks = u64(), execs = u64()
            return .record(.counters(CountersRecord(time: time, pid: pid, comm: comm, wpFaults: wp, copies: copies,
                                                    zeroFills: zero, fileCopies: fileCopies, sharedWrites: shared,
                                                    thpWPFaults: thp, forks: forks, execs: execs)))
        case .end?:
            let time = u64(), reason = str()
            if tooShort { return short() }
            return .record(.end(EndRecord(time: time, reason: reason)))
        default:
            return .unknown
        }
    }

    // MARK: header block

    struct ParsedHeader {
        var header: TraceHeader
        var schema: [TraceRecordSchema]
    }

    struct HeaderDetail: Error { var text: String }

    static func parseHeaderBlock(_ payload: UnsafeRawBufferPointer, entries declared: Int) -> Result<ParsedHeader, HeaderDetail> {
        var c = ByteCursor(payload)
        var header = TraceHeader(kernelRelease: "", hostname: "", attachTiers: [:], pageSize: 0,
                                 realtimeOffsetNanoseconds: 0, startTime: 0, ramBytes: 0, swapBytes: 0,
                                 overcommitMemory: 0, overcommitRatio: 0, overcommitKBytes: 0,
                                 transparentHugePages: "", selection: "", toolVersion: "")
        func fail(_ s: String) -> Result<ParsedHeader, HeaderDetail> { .failure(HeaderDetail(text: s)) }
        guard let entryCount = c.u16() else { return fail("no entry count") }
        guard Int(entryCount) == declared else {
            return fail("\(entryCount) entries, block header says \(declared)")
        }
        typealias K = TraceFormat.HeaderKey
        for index in 0..<Int(entryCount) {
            guard let key = c.string16(), let rawType = c.u8(), let valueLength = c.u32(),
                  let value = c.bytes(Int(valueLength)) else {
                return fail("entry \(index) runs past the payload")
            }
            let type = TraceFormat.ValueType(rawValue: rawType)
            func number() -> UInt64? {
                guard value.count == 8, let b = value.baseAddress else { return nil }
                return load64(b, 0)
            }
            func wrongType(_ expected: String) -> Result<ParsedHeader, HeaderDetail> {
                fail("\(printable(key)) has value type \(rawType) and \(value.count) bytes, expected \(expected)")
            }
            switch key {
            case K.kernelRelease, K.hostname, K.transparentHugePages, K.selection, K.toolVersion:
                guard type == .string else { return wrongType("a string") }
                let s = String(decoding: value, as: UTF8.self)
                switch key {
                case K.kernelRelease: header.kernelRelease = s
                case K.hostname: header.hostname = s
                case K.transparentHugePages: header.transparentHugePages = s
                case K.selection: header.selection = s
                default: header.toolVersion = s
                }
            case K.attachTiers:
                guard type == .stringMap else { return wrongType("a string map") }
                var m = ByteCursor(value)
                guard let count = m.u32() else { return fail("attachTiers has no pair count") }
                // Each pair takes at least 4 bytes: this bounds the loop by the input.
                guard Int(count) <= m.remaining / 4 else {
                    return fail("attachTiers says \(count) pairs in \(m.remaining) bytes")
                }
                var map: [String: String] = [:]
                for _ in 0..<Int(count) {
                    guard let k = m.string16(), let v = m.string16() else {
                        return fail("attachTiers pairs run past the value")
                    }
                    map[k] = v
                }
                header.attachTiers = map
            case K.pageSize, K.startTime, K.ramBytes, K.swapBytes, K.overcommitKBytes:
                guard type == .u64, let v = number() else { return wrongType("u64") }
                switch key {
                case K.pageSize:
                    guard let size = UInt32(exactly: v) else { return fail("pageSize \(v) does not fit 32 bits") }
                    header.pageSize = size
                case K.startTime: header.startTime = v
                case K.ramBytes: header.ramBytes = v
                case K.swapBytes: header.swapBytes = v
                default: header.overcommitKBytes = v
                }
            case K.realtimeOffsetNanoseconds, K.overcommitMemory, K.overcommitRatio:
                guard type == .i64, let bits = number() else { return wrongType("i64") }
                let v = Int64(bitPattern: bits)
                switch key {
                case K.realtimeOffsetNanoseconds: header.realtimeOffsetNanoseconds = v
                default:
                    guard let small = Int32(exactly: v) else { return fail("\(printable(key)) \(v) does not fit 32 bits") }
                    if key == K.overcommitMemory { header.overcommitMemory = small } else { header.overcommitRatio = small }
                }
            default:
                break   // a key from a later version: ignored
            }
        }
        guard let schemaCount = c.u16() else { return fail("no schema table") }
        var schema: [TraceRecordSchema] = []
        for index in 0..<Int(schemaCount) {
            guard let id = c.u8(), let name = c.string16(), let fieldCount = c.u8() else {
                return fail("schema entry \(index) runs past the payload")
            }
            var fields: [TraceFieldSchema] = []
            for _ in 0..<Int(fieldCount) {
                guard let fieldName = c.string16(), let fieldType = c.string16() else {
                    return fail("schema of \(printable(name)) runs past the payload")
                }
                fields.append(TraceFieldSchema(name: fieldName, type: fieldType))
            }
            schema.append(TraceRecordSchema(id: id, name: name, fields: fields))
        }
        // Bytes after the schema table: additions of a later version, ignored.
        return .success(ParsedHeader(header: header, schema: schema))
    }
}

extension TraceContents {
    init(_ summary: TraceSummary, records: [TraceRecord]) {
        self.init(header: summary.header, schema: summary.schema, records: records, blocks: summary.blocks,
                  bytes: summary.bytes, cut: summary.cut)
    }
}

/// A string from the file made fit for a one-line message: control
/// characters escaped, at most 40 characters.
func printable(_ s: String) -> String {
    var out = ""
    for scalar in s.unicodeScalars.prefix(40) {
        if scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
            out += scalar.escaped(asASCII: true)
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return s.unicodeScalars.count > 40 ? out + "…" : out
}

// MARK: byte access

@inlinable @inline(__always) func load16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
}
@inlinable @inline(__always) func load32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
}
@inlinable @inline(__always) func loadI32(_ p: UnsafeRawPointer, _ o: Int) -> Int32 {
    Int32(bitPattern: load32(p, o))
}
@inlinable @inline(__always) func load64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
    UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
}

/// Bounds-checked sequential reads over a byte buffer.
struct ByteCursor {
    let buffer: UnsafeRawBufferPointer
    var position = 0
    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }
    var remaining: Int { buffer.count - position }

    mutating func bytes(_ n: Int) -> UnsafeRawBufferPointer? {
        guard n >= 0, n <= remaining else { return nil }
        defer { position += n }
        guard let base = buffer.baseAddress else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + position, count: n)
    }
    mutating func u8() -> UInt8? {
        guard remaining >= 1, let b = buffer.baseAddress else { return nil }
        defer { position += 1 }
        return b.load(fromByteOffset: position, as: UInt8.self)
    }
    mutating func u16() -> UInt16? {
        guard remaining >= 2, let b = buffer.baseAddress else { return nil }
        defer { position += 2 }
        return load16(b, position)
    }
    mutating func u32() -> UInt32? {
        guard remaining >= 4, let b = buffer.baseAddress else { return nil }
        defer { position += 4 }
        return load32(b, position)
    }
    mutating func string16() -> String? {
        guard let n = u16(), let b = bytes(Int(n)) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }
}

// MARK: sources and sinks

/// Where the decoder gets its bytes.
protocol TraceByteSource {
    /// Total bytes (the file size when opened).
    var size: Int { get }
    /// Up to `count` bytes at `offset`: fewer only at the end of the input.
    /// Valid until the next call.
    mutating func bytes(at offset: Int, count: Int) throws -> UnsafeRawBufferPointer
}

struct MemorySource: TraceByteSource {
    let buffer: UnsafeRawBufferPointer
    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }
    var size: Int { buffer.count }
    @inline(__always)
    func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        guard let base = buffer.baseAddress, offset >= 0, offset < buffer.count, count > 0 else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: base + offset, count: min(count, buffer.count - offset))
    }
}

/// Reads a file with pread(2) into one reused buffer (at most one block).
final class FileSource: TraceByteSource {
    let path: String
    let size: Int
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer?
    private var capacity = 0

    init(path: String) throws {
        self.path = path
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        if fd < 0 {
            let e = errno
            throw TraceFileError(path: path, problem: e == ENOENT ? .missing : .unreadable(errno: e))
        }
        var st = stat()
        if fstat(fd, &st) < 0 {
            let e = errno
            Glibc.close(fd)
            throw TraceFileError(path: path, problem: .unreadable(errno: e))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            Glibc.close(fd)
            throw TraceFileError(path: path, problem: .unreadable(errno: EISDIR))
        }
        self.fd = fd
        self.size = max(0, Int(st.st_size))
    }

    deinit {
        Glibc.close(fd)
        buffer?.deallocate()
    }

    func bytes(at offset: Int, count: Int) throws -> UnsafeRawBufferPointer {
        // Callers bound count (≤ 16 MiB payload); the file size bounds it too.
        let want = min(count, max(0, size - offset))
        guard want > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        if capacity < want {
            buffer?.deallocate()
            let newCapacity = max(want, 64 << 10 + TraceFormat.blockHeaderSize)
            buffer = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            capacity = newCapacity
        }
        guard let buffer = buffer else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        var got = 0
        while got < want {
            let n = pread(fd, buffer + got, want - got, off_t(offset + got))
            if n < 0 {
                if errno == EINTR { continue }
                throw TraceFileError(path: path, problem: .system(operation: "read", errno: errno))
            }
            if n == 0 { break }   // the file shrank
            got += n
        }
        return UnsafeRawBufferPointer(start: buffer, count: got)
    }
}

/// The stored payload checksums of a file's blocks that one read verified,
/// so that a second read of the same file (the replay reads it twice) only
/// compares each block's stored checksum with the verified one instead of
/// checksumming its payload again (crc32 is most of reading a block).
public struct BlockChecksums: Sendable {
    private var checksums: [UInt32] = []
    /// The block whose checksum is `checksums[0]` (a part's first, `TracePart`).
    private var first = 0
    /// Set by the read that filled it: from then on it is only read.
    var complete = false

    public init() {}

    /// For a read of the blocks from `firstBlock` on.
    init(firstBlock: Int) { first = firstBlock }

    /// The checksums the reads of consecutive parts verified, one after the other, complete.
    public init(joining parts: [BlockChecksums]) {
        for p in parts where p.first == first + checksums.count { checksums += p.checksums }
        complete = true
    }

    @inline(__always)
    func verified(block: Int, _ crc: UInt32) -> Bool {
        complete && block >= first && block - first < checksums.count && checksums[block - first] == crc
    }

    mutating func add(block: Int, _ crc: UInt32) {
        if !complete && block == first + checksums.count { checksums.append(crc) }
    }
}

/// What `TraceFileReader.visitRecords` hands the records to, in file order.
public protocol TraceRecordVisitor {
    mutating func visit(fault: FaultRecord) throws
    mutating func visit(resolve: ResolveRecord) throws
    /// Every record that is neither a fault nor a resolve.
    mutating func visit(_ record: TraceRecord) throws
}

/// Where decoded records go.
@usableFromInline
protocol TraceRecordSink {
    mutating func accept(_ record: consuming TraceRecord) throws
    /// The hot paths: `accept(.fault(fault))` unless the sink does better.
    mutating func accept(fault: FaultRecord) throws
    mutating func accept(resolve: ResolveRecord) throws
}

extension TraceRecordSink {
    @inlinable @inline(__always)
    mutating func accept(fault: FaultRecord) throws { try accept(.fault(fault)) }
    @inlinable @inline(__always)
    mutating func accept(resolve: ResolveRecord) throws { try accept(.resolve(resolve)) }
}

@usableFromInline
struct VisitorSink<V: TraceRecordVisitor>: TraceRecordSink {
    @usableFromInline var visitor: V
    @inlinable init(visitor: consuming V) { self.visitor = visitor }
    @inlinable @inline(__always)
    mutating func accept(_ record: consuming TraceRecord) throws {
        try visitor.visit(record)
    }
    @inlinable @inline(__always)
    mutating func accept(fault: FaultRecord) throws {
        try visitor.visit(fault: fault)
    }
    @inlinable @inline(__always)
    mutating func accept(resolve: ResolveRecord) throws {
        try visitor.visit(resolve: resolve)
    }
}

struct ArraySink: TraceRecordSink {
    var records: [TraceRecord] = []
    init(capacity: Int) {
        records.reserveCapacity(capacity)
        adviseHugePages()
    }

    /// A large record array is written once, front to back, right after it is
    /// allocated: asking for transparent huge pages (MADV_HUGEPAGE; a no-op
    /// when THP is "never") saves a page fault per 4 KiB, which otherwise
    /// costs more than decoding (5 M records: ~500 MB, 128 k faults).
    private mutating func adviseHugePages() {
        #if os(Linux)
        let bytes = records.capacity * MemoryLayout<TraceRecord>.stride
        let huge = 2 << 20
        guard bytes >= 4 * huge else { return }
        records.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let start = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
            let end = (Int(bitPattern: base) + bytes) & ~(huge - 1)
            if end > start, let p = UnsafeMutableRawPointer(bitPattern: start) {
                _ = madvise(p, end - start, 14)   // MADV_HUGEPAGE
            }
        }
        #endif
    }
    @inline(__always)
    mutating func accept(_ record: consuming TraceRecord) { records.append(record) }
}

struct ClosureSink: TraceRecordSink {
    let body: (TraceRecord) throws -> Void
    @inline(__always)
    mutating func accept(_ record: consuming TraceRecord) throws {
        try body(record)
    }
}
