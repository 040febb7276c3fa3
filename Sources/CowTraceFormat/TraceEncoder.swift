// Encoding of records and of the header block (layout: TraceFormat.swift).

/// The bytes of one block being built: a 32-byte block header slot followed by
/// the payload. Records are encoded with raw stores straight into the buffer.
internal final class TraceBlockEncoder {
    private(set) var buffer: UnsafeMutableRawPointer
    private(set) var capacity: Int
    /// End of the encoded bytes (the payload starts at blockHeaderSize).
    /// Unchecked: every field written moves it, and the encoder is never
    /// shared between threads (the writer's lock or its one owner).
    @exclusivity(unchecked) var position: Int
    @exclusivity(unchecked) var recordCount = 0

    var payloadLength: Int { position - TraceFormat.blockHeaderSize }

    /// `payloadCapacity` is the payload a block may reach before it is written;
    /// one more record of any size always fits.
    init(payloadCapacity: Int) {
        capacity = TraceFormat.blockHeaderSize + payloadCapacity + 65536 + 64
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        position = TraceFormat.blockHeaderSize
    }

    deinit { buffer.deallocate() }

    func reset() {
        position = TraceFormat.blockHeaderSize
        recordCount = 0
    }

    /// Fills in the block header; returns the whole block (header + payload).
    func seal(kind: UInt32, sequence: UInt64) -> UnsafeRawBufferPointer {
        let payload = payloadLength
        let b = buffer
        b.storeBytes(of: TraceFormat.blockMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        b.storeBytes(of: kind.littleEndian, toByteOffset: 4, as: UInt32.self)
        b.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        b.storeBytes(of: UInt32(truncatingIfNeeded: payload).littleEndian, toByteOffset: 16, as: UInt32.self)
        b.storeBytes(of: UInt32(truncatingIfNeeded: recordCount).littleEndian, toByteOffset: 20, as: UInt32.self)
        let payloadCRC = traceCRC32(b + TraceFormat.blockHeaderSize, payload)
        b.storeBytes(of: payloadCRC.littleEndian, toByteOffset: 24, as: UInt32.self)
        let headerCRC = traceCRC32(b, 28)
        b.storeBytes(of: headerCRC.littleEndian, toByteOffset: 28, as: UInt32.self)
        return UnsafeRawBufferPointer(start: b, count: TraceFormat.blockHeaderSize + payload)
    }

    /// Moves the bytes `from..<position` to the start of the payload (after
    /// the block before them was written), making them the only record.
    func keepOnly(from start: Int) {
        let length = position - start
        let dst = buffer + TraceFormat.blockHeaderSize
        if start != TraceFormat.blockHeaderSize {
            dst.copyMemory(from: buffer + start, byteCount: length)
        }
        position = TraceFormat.blockHeaderSize + length
        recordCount = 1
    }

    // MARK: raw stores

    @inline(__always) private func put(_ v: UInt8) {
        buffer.storeBytes(of: v, toByteOffset: position, as: UInt8.self); position += 1
    }
    @inline(__always) private func put(_ v: UInt32) {
        buffer.storeBytes(of: v.littleEndian, toByteOffset: position, as: UInt32.self); position += 4
    }
    @inline(__always) private func put(_ v: Int32) {
        buffer.storeBytes(of: v.littleEndian, toByteOffset: position, as: Int32.self); position += 4
    }
    @inline(__always) private func put(_ v: UInt64) {
        buffer.storeBytes(of: v.littleEndian, toByteOffset: position, as: UInt64.self); position += 8
    }
    @inline(__always) private func put(_ v: Int64) {
        buffer.storeBytes(of: v.littleEndian, toByteOffset: position, as: Int64.self); position += 8
    }
    private func put(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            let n = utf8PrefixLength(utf8, max: TraceFormat.maxStringBytes)
            buffer.storeBytes(of: UInt16(n).littleEndian, toByteOffset: position, as: UInt16.self)
            position += 2
            if n > 0, let base = utf8.baseAddress {
                (buffer + position).copyMemory(from: base, byteCount: n)
                position += n
            }
        }
    }

    /// Encodes one record at the end of the payload; returns its offset in the buffer.
    @discardableResult
    func append(_ record: TraceRecord) -> Int {
        let start = position
        buffer.storeBytes(of: record.typeID, toByteOffset: start, as: UInt8.self)
        buffer.storeBytes(of: UInt8(0), toByteOffset: start + 1, as: UInt8.self)
        position += 4
        switch record {
        case .fault(let r):
            put(r.time); put(r.pid); put(r.tid); put(r.address); put(r.ip)
            put(r.kind.rawValue); put(r.faultClass.rawValue); put(r.mapping.rawValue)
        case .resolve(let r):
            put(r.time); put(r.pid); put(r.tid); put(r.address); put(r.faultClass.rawValue)
        case .process(let r):
            put(r.time); put(r.pid); put(r.ppid); put(r.uid); put(r.comm)
            put(r.startBrk); put(r.brk); put(r.startStack)
        case .mapping(let r):
            put(r.pid); put(r.start); put(r.end); put(r.permissions); put(r.offset); put(r.inode); put(r.path)
        case .pageRun(let r):
            put(r.pid); put(r.address); put(r.count); put(r.flags.rawValue); put(r.frame)
        case .fork(let r):
            put(r.time); put(r.parent); put(r.parentTid); put(r.child); put(r.comm)
        case .exec(let r):
            put(r.time); put(r.pid); put(r.tid); put(r.comm)
        case .exit(let r):
            put(r.time); put(r.pid); put(r.tid); put(r.exitCode)
        case .addressSpace(let r):
            put(r.time); put(r.pid); put(r.tid); put(r.op.rawValue)
            for i in 0..<5 { put(i < r.args.count ? r.args[i] : 0) }
            put(r.result)
        case .oomKill(let r):
            put(r.time); put(r.victim); put(r.comm); put(r.uid); put(r.oomScoreAdj)
            put(r.totalVMKB); put(r.anonRSSKB); put(r.fileRSSKB); put(r.shmemRSSKB); put(r.pgtablesKB)
            put(r.constraint)
        case .gap(let r):
            put(r.time); put(r.reason.rawValue); put(r.lost)
        case .counters(let r):
            put(r.time); put(r.pid); put(r.comm); put(r.wpFaults); put(r.copies); put(r.zeroFills)
            put(r.fileCopies); put(r.sharedWrites); put(r.thpWPFaults); put(r.forks); put(r.execs)
        case .end(let r):
            put(r.time); put(r.reason)
        }
        // At most 82 fixed bytes + 2 strings of maxStringBytes: always < 65536.
        buffer.storeBytes(of: UInt16(truncatingIfNeeded: position - start).littleEndian,
                          toByteOffset: start + 2, as: UInt16.self)
        recordCount += 1
        return start
    }
}

extension TraceBlockEncoder {
    /// What fault and resolve records begin with: type, reserved, length, then
    /// time, pid, tid and address at fixed offsets.
    @inline(__always)
    private func storeHead(_ b: UnsafeMutableRawPointer, type: TraceFormat.RecordType, bytes: Int,
                           time: UInt64, pid: Int32, tid: Int32, address: UInt64) {
        b.storeBytes(of: (UInt32(bytes) << 16 | UInt32(type.rawValue)).littleEndian, as: UInt32.self)
        b.storeBytes(of: time.littleEndian, toByteOffset: 4, as: UInt64.self)
        b.storeBytes(of: pid.littleEndian, toByteOffset: 12, as: Int32.self)
        b.storeBytes(of: tid.littleEndian, toByteOffset: 16, as: Int32.self)
        b.storeBytes(of: address.littleEndian, toByteOffset: 20, as: UInt64.self)
    }

    /// A `fault` record, the same bytes as `append(.fault(...))` without
    /// building the enum (the recorder's most frequent record).
    @inline(__always)
    func appendFault(time: UInt64, pid: Int32, tid: Int32, address: UInt64, ip: UInt64,
                     kind: RecordedFaultKind, faultClass: RecordedFaultClass, mapping: RecordedMappingKind) -> Int {
        let start = position, b = buffer + start
        storeHead(b, type: .fault, bytes: TraceFormat.faultRecordBytes, time: time, pid: pid, tid: tid, address: address)
        b.storeBytes(of: ip.littleEndian, toByteOffset: 28, as: UInt64.self)
        b.storeBytes(of: kind.rawValue, toByteOffset: 36, as: UInt8.self)
        b.storeBytes(of: faultClass.rawValue, toByteOffset: 37, as: UInt8.self)
        b.storeBytes(of: mapping.rawValue, toByteOffset: 38, as: UInt8.self)
        position = start + TraceFormat.faultRecordBytes
        recordCount += 1
        return start
    }

    /// A `resolve` record, the same bytes as `append(.resolve(...))`.
    @inline(__always)
    func appendResolve(time: UInt64, pid: Int32, tid: Int32, address: UInt64, faultClass: RecordedFaultClass) -> Int {
        let start = position, b = buffer + start
        storeHead(b, type: .resolve, bytes: TraceFormat.resolveRecordBytes, time: time, pid: pid, tid: tid, address: address)
        b.storeBytes(of: faultClass.rawValue, toByteOffset: 28, as: UInt8.self)
        position = start + TraceFormat.resolveRecordBytes
        recordCount += 1
        return start
    }
}

extension TraceFormat {
    /// A fault record as written: header 4, time 8, pid 4, tid 4, address 8,
    /// ip 8, kind, faultClass, mapping.
    static let faultRecordBytes = 39
    /// A resolve record: header 4, time 8, pid 4, tid 4, address 8, faultClass.
    static let resolveRecordBytes = 29
}

/// The longest prefix of `utf8` of at most `max` bytes that ends on a
/// character (scalar) boundary.
@inline(__always)
internal func utf8PrefixLength(_ utf8: UnsafeBufferPointer<UInt8>, max: Int) -> Int {
    if utf8.count <= max { return utf8.count }
    var n = max
    // Back up over continuation bytes (10xxxxxx) so no scalar is split.
    while n > 0 && (utf8[n] & 0xC0) == 0x80 { n -= 1 }
    return n
}

/// The file preamble and the header block (block 0), ready to write.
internal func encodeFilePrefix(header: TraceHeader) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(4096)
    out.append(contentsOf: TraceFormat.fileMagic)
    appendLE(&out, TraceFormat.version)
    appendLE(&out, UInt16(0))      // flags
    appendLE(&out, UInt32(0))      // reserved

    var payload: [UInt8] = []
    payload.reserveCapacity(4096)
    var entries = 0
    func key(_ k: String, _ type: TraceFormat.ValueType, _ value: [UInt8]) {
        appendString16(&payload, k)
        payload.append(type.rawValue)
        appendLE(&payload, UInt32(truncatingIfNeeded: value.count))
        payload.append(contentsOf: value)
        entries += 1
    }
    func u64(_ k: String, _ v: UInt64) { var b: [UInt8] = []; appendLE(&b, v); key(k, .u64, b) }
    func i64(_ k: String, _ v: Int64) { var b: [UInt8] = []; appendLE(&b, v); key(k, .i64, b) }
    func str(_ k: String, _ v: String) {
        let bytes = Array(v.utf8)
        let n = bytes.withUnsafeBufferPointer { utf8PrefixLength($0, max: TraceFormat.maxHeaderStringBytes) }
        key(k, .string, Array(bytes[0..<n]))
    }
    func map(_ k: String, _ m: [String: String]) {
        var b: [UInt8] = []
        // Sorted, so that the same header always gives the same bytes.
        let pairs = m.sorted { $0.key < $1.key }
        appendLE(&b, UInt32(truncatingIfNeeded: pairs.count))
        for (mk, mv) in pairs { appendString16(&b, mk); appendString16(&b, mv) }
        key(k, .stringMap, b)
    }
    typealias K = TraceFormat.HeaderKey
    str(K.kernelRelease, header.kernelRelease)
    str(K.hostname, header.hostname)
    map(K.attachTiers, header.attachTiers)
    u64(K.pageSize, UInt64(header.pageSize))
    i64(K.realtimeOffsetNanoseconds, header.realtimeOffsetNanoseconds)
    u64(K.startTime, header.startTime)
    u64(K.ramBytes, header.ramBytes)
    u64(K.swapBytes, header.swapBytes)
    i64(K.overcommitMemory, Int64(header.overcommitMemory))
    i64(K.overcommitRatio, Int64(header.overcommitRatio))
    u64(K.overcommitKBytes, header.overcommitKBytes)
    str(K.transparentHugePages, header.transparentHugePages)
    str(K.selection, header.selection)
    str(K.toolVersion, header.toolVersion)

    var withCount: [UInt8] = []
    withCount.reserveCapacity(payload.count + 4096)
    appendLE(&withCount, UInt16(entries))
    withCount.append(contentsOf: payload)
    let schema = TraceFormat.recordSchema
    appendLE(&withCount, UInt16(schema.count))
    for record in schema {
        withCount.append(record.id)
        appendString16(&withCount, record.name)
        withCount.append(UInt8(record.fields.count))
        for field in record.fields {
            appendString16(&withCount, field.name)
            appendString16(&withCount, field.type)
        }
    }

    var blockHeader = [UInt8](repeating: 0, count: TraceFormat.blockHeaderSize)
    blockHeader.withUnsafeMutableBytes { b in
        b.storeBytes(of: TraceFormat.blockMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        b.storeBytes(of: TraceFormat.headerBlockKind.littleEndian, toByteOffset: 4, as: UInt32.self)
        b.storeBytes(of: UInt64(0).littleEndian, toByteOffset: 8, as: UInt64.self)
        b.storeBytes(of: UInt32(truncatingIfNeeded: withCount.count).littleEndian, toByteOffset: 16, as: UInt32.self)
        b.storeBytes(of: UInt32(entries).littleEndian, toByteOffset: 20, as: UInt32.self)
        let crc = withCount.withUnsafeBytes { traceCRC32($0.baseAddress, $0.count) }
        b.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self)
        let hcrc = traceCRC32(UnsafeRawPointer(b.baseAddress), 28)
        b.storeBytes(of: hcrc.littleEndian, toByteOffset: 28, as: UInt32.self)
    }
    out.append(contentsOf: blockHeader)
    out.append(contentsOf: withCount)
    return out
}

@inline(__always)
internal func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
}

/// u16 length + UTF-8, cut at maxHeaderStringBytes on a scalar boundary.
internal func appendString16(_ out: inout [UInt8], _ s: String) {
    var s = s
    s.withUTF8 { utf8 in
        let n = utf8PrefixLength(utf8, max: TraceFormat.maxHeaderStringBytes)
        appendLE(&out, UInt16(n))
        out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[0..<n]))
    }
}

extension TraceFileWriter {
    /// A whole recording in memory, as the writer would write it (for tests
    /// and the fuzzer): preamble, header block, then records in blocks of
    /// about `blockBytes` payload bytes.
    internal static func encodedFile(header: TraceHeader, records: [TraceRecord], blockBytes: Int = 64 << 10) -> [UInt8] {
        var out = encodeFilePrefix(header: header)
        let limit = clampBlockBytes(blockBytes)
        let encoder = TraceBlockEncoder(payloadCapacity: limit)
        var sequence: UInt64 = 1
        func emit() {
            let block = encoder.seal(kind: TraceFormat.recordsBlockKind, sequence: sequence)
            out.append(contentsOf: block)
            sequence += 1
            encoder.reset()
        }
        for record in records {
            let start = encoder.append(record)
            if encoder.payloadLength > limit && encoder.recordCount > 1 {
                let end = encoder.position
                encoder.position = start
                encoder.recordCount -= 1
                emit()
                encoder.position = end   // the record's bytes are still in place
                encoder.keepOnly(from: start)
            }
            if encoder.payloadLength >= limit { emit() }
        }
        if encoder.recordCount > 0 { emit() }
        return out
    }

    internal static func clampBlockBytes(_ blockBytes: Int) -> Int {
        min(max(blockBytes, 1), TraceFormat.maxPayloadBytes - 65536)
    }
}
