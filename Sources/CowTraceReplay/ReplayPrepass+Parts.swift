import CowTraceFormat
#if canImport(Glibc)
import Glibc
#endif

extension ReplayPrepass {
    /// The prepass of the recording at `path`, and what its read found: the
    /// file's two halves are read at once by two threads (the model's thread
    /// has nothing to do yet) and their prepasses joined; when the file cannot
    /// be split, or a half has a problem, it is read whole as
    /// `TraceFileReader.visitRecords` reads it (which reports the problem).
    /// `checksums` gets the blocks' checksums.
    public static func read(path: String, salvage: Bool, checksums: inout BlockChecksums) throws -> (ReplayPrepass, TraceSummary) {
        if let read = readInTwo(path: path, checksums: &checksums) { return read }
        var prepass = ReplayPrepass()
        checksums = BlockChecksums()
        let summary = try TraceFileReader.visitRecords(path: path, salvage: salvage, checksums: &checksums, &prepass)
        return (prepass, summary)
    }

    /// The second half's read, on the other thread.
    private final class PartRead: @unchecked Sendable {
        let part: TracePart
        var prepass: ReplayPrepass
        var checksums = BlockChecksums()
        var read: TracePartRead?
        init(_ part: TracePart) {
            self.part = part
            prepass = ReplayPrepass(recordsBefore: part.recordsBefore)
        }
        func run(_ path: String) { read = TraceFileReader.visitRecords(path: path, part: part, checksums: &checksums, &prepass) }
    }

    private static func readInTwo(path: String, checksums: inout BlockChecksums) -> (ReplayPrepass, TraceSummary)? {
        guard let parts = try? TraceFileReader.parts(path: path, count: 2), parts.count == 2 else { return nil }
        let second = PartRead(parts[1])
        let thread = startThread { second.run(path) }
        var prepass = ReplayPrepass()
        var firstChecksums = BlockChecksums()
        let first = TraceFileReader.visitRecords(path: path, part: parts[0], checksums: &firstChecksums, &prepass)
        if let thread { pthread_join(thread, nil) } else { second.run(path) }
        guard let first, let header = first.header, let later = second.read,
              first.records == parts[1].recordsBefore else { return nil }
        prepass.append(second.prepass)
        checksums = BlockChecksums(joining: [firstChecksums, second.checksums])
        let size = parts[1].end
        let summary = TraceSummary(header: header, schema: first.schema, records: first.records + later.records,
                                   blocks: first.blocks + later.blocks, bytes: size,
                                   cut: first.sawEnd || later.sawEnd ? nil : .noEndRecord(offset: size))
        return (prepass, summary)
    }
}
