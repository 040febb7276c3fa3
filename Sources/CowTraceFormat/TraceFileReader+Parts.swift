/// A recording read in parts, one per thread: runs of whole blocks found by
/// walking the block headers (`TraceFileReader.parts`), each read on its own
/// (`TraceFileReader.visitRecords(path:part:checksums:_:)`). Any problem in a
/// part makes its read return nil: the caller then reads the whole file as
/// usual, which reports the problem as ever (or salvages what is before it).

/// A run of whole blocks of a recording.
public struct TracePart: Sendable, Equatable {
    /// Offset of its first block, and after its last one.
    public var start: Int
    public var end: Int
    /// Sequence number of its first block.
    public var sequence: UInt64
    /// The records of the blocks before it, as their headers count them.
    public var recordsBefore: Int
}

/// What the read of a part found.
public struct TracePartRead: Sendable {
    /// The header, from the first part only.
    public var header: TraceHeader?
    public var schema: [TraceRecordSchema]
    /// Records handed to the visitor.
    public var records: Int
    public var blocks: Int
    /// Whether the part holds an `end` record.
    public var sawEnd: Bool
}

extension TraceFileReader {
    /// The recording cut into up to `count` parts of about equal size at
    /// block boundaries, the first holding the header block; a single part
    /// when a block header does not check out or the blocks do not end at
    /// the end of the file.
    public static func parts(path: String, count: Int) throws -> [TracePart] {
        var source = try FileSource(path: path)
        let size = source.size
        let (blocks, offset) = try blockHeaders(&source)
        let whole = TracePart(start: TraceFormat.preambleSize, end: size, sequence: 0, recordsBefore: 0)
        guard offset == size, count > 1, blocks.count > count else { return [whole] }
        var parts: [TracePart] = []
        var block = 0, records = 0
        for k in 1...count {
            let start = block
            if k == count {
                block = blocks.count
            } else {
                let target = TraceFormat.preambleSize + (size - TraceFormat.preambleSize) * k / count
                block = max(block + 1, 1)
                while block < blocks.count - 1 && blocks[block].offset < target { block += 1 }
            }
            guard block > start else { return [whole] }
            let end = block < blocks.count ? blocks[block].offset : size
            parts.append(TracePart(start: blocks[start].offset, end: end, sequence: UInt64(start), recordsBefore: records))
            for b in start..<block { records += blocks[b].records }
        }
        return parts
    }

    /// Reads the blocks of `part` as `visitRecords(path:salvage:checksums:_:)`
    /// reads them (the preamble too, for the first part); nil at any problem.
    /// `checksums` gets the part's.
    /// Inlinable, as `visitRecords(path:salvage:checksums:_:)` is.
    @inlinable
    public static func visitRecords<V: TraceRecordVisitor>(path: String, part: TracePart, checksums: inout BlockChecksums,
                                                           _ visitor: inout V) -> TracePartRead? {
        var sink = VisitorSink(visitor: consume visitor)
        defer { visitor = sink.visitor }
        return visitPart(path: path, part: part, checksums: &checksums) { payload, offset, found, handed, sawEnd in
            try decodeRecords(payload, fileOffset: offset, found: &found, handed: &handed, sawEnd: &sawEnd, sink: &sink)
        }
    }

    @usableFromInline
    static func visitPart(path: String, part: TracePart, checksums: inout BlockChecksums,
                          records: RecordsDecoder) -> TracePartRead? {
        checksums = BlockChecksums(firstBlock: Int(part.sequence))
        do {
            var source = try FileSource(path: path)
            guard part.end <= source.size else { return nil }
            var header: TraceHeader? = nil
            if part.start == TraceFormat.preambleSize {
                let preamble = try source.bytes(at: 0, count: TraceFormat.preambleSize)
                guard preamble.count == TraceFormat.preambleSize else { return nil }
                for i in 0..<TraceFormat.fileMagic.count where preamble[i] != TraceFormat.fileMagic[i] { return nil }
                let version = UInt16(preamble[8]) | UInt16(preamble[9]) << 8
                guard version >= 1 && version <= TraceFormat.version else { return nil }
            } else {
                // Not the first part: a header block here is a problem (readBlock finds it).
                header = TraceHeader(kernelRelease: "", hostname: "", attachTiers: [:], pageSize: 0,
                                     realtimeOffsetNanoseconds: 0, startTime: 0, ramBytes: 0, swapBytes: 0,
                                     overcommitMemory: 0, overcommitRatio: 0, overcommitKBytes: 0,
                                     transparentHugePages: "", selection: "", toolVersion: "")
            }
            var recordsSeen = 0
            var schema: [TraceRecordSchema] = []
            var offset = part.start, sequence = part.sequence, blocks = 0, sawEnd = false
            while offset < part.end {
                let problem = try readBlock(&source, at: offset, size: part.end, expectedSequence: sequence,
                                            header: &header, schema: &schema, sawEnd: &sawEnd, checksums: &checksums,
                                            records: records, recordsSeen: &recordsSeen, nextOffset: &offset)
                if problem != nil { return nil }
                blocks += 1
                sequence &+= 1
            }
            guard offset == part.end else { return nil }
            return TracePartRead(header: part.start == TraceFormat.preambleSize ? header : nil, schema: schema,
                                 records: recordsSeen, blocks: blocks, sawEnd: sawEnd)
        } catch {
            return nil
        }
    }
}
