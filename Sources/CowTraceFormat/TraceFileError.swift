import Foundation

/// What went wrong with a recording file. Offsets are byte offsets in the file.
public enum TraceProblem: Equatable, Sendable {
    // Creating and writing (TraceFileWriter).
    /// The path exists and overwriting was not asked for.
    case exists
    /// The path is a symbolic link (never followed).
    case symbolicLink
    case permissionDenied
    case readOnlyFileSystem
    /// The directory of the path does not exist.
    case noSuchDirectory
    case isDirectory
    case noSpace
    /// The header block would be larger than TraceFormat.maxPayloadBytes.
    case headerTooLarge(bytes: Int)
    /// The writer was closed (or failed) before this call.
    case closed
    /// Any other failed system call: "open", "write", "fsync", "close", "read", "stat".
    case system(operation: String, errno: Int32)

    // Reading (TraceFileReader).
    case missing
    case unreadable(errno: Int32)
    case empty
    /// No "COWTRACE" magic at offset 0.
    case notCowtrace
    /// The file ends inside the 16-byte preamble.
    case truncatedPreamble(present: Int)
    case unsupportedVersion(UInt16)
    /// Fewer than 32 bytes of block header at the end of the file.
    case truncatedBlockHeader(offset: Int, present: Int)
    /// The payload runs past the end of the file.
    case truncatedBlock(offset: Int, declared: Int, present: Int)
    case badBlockMagic(offset: Int, found: UInt32)
    case headerChecksum(offset: Int)
    case payloadTooLarge(offset: Int, declared: Int)
    case payloadChecksum(offset: Int, sequence: UInt64)
    case firstBlockNotHeader(offset: Int, kind: UInt32)
    /// A second header block.
    case unexpectedHeaderBlock(offset: Int)
    case sequence(offset: Int, expected: UInt64, found: UInt64)
    case malformedHeader(offset: Int, detail: String)
    /// A record's length (or its 4-byte record header) runs past its block's payload.
    case recordOverrun(offset: Int, length: Int, available: Int)
    /// A record shorter than its type's fields (or its strings).
    case recordTooShort(offset: Int, type: UInt8, length: Int, needed: Int)
    /// An enum field with a raw value this version does not know.
    case invalidValue(offset: Int, field: String, value: UInt64)
    /// The block header's record count differs from the records in the payload.
    case recordCountMismatch(offset: Int, declared: Int, found: Int)

    /// The file offset the problem is at, for reading problems.
    public var offset: Int? {
        switch self {
        case .truncatedPreamble(let present): return present
        case .notCowtrace: return 0
        case .truncatedBlockHeader(let o, _), .truncatedBlock(let o, _, _), .badBlockMagic(let o, _),
             .headerChecksum(let o), .payloadTooLarge(let o, _), .payloadChecksum(let o, _),
             .firstBlockNotHeader(let o, _), .unexpectedHeaderBlock(let o), .sequence(let o, _, _),
             .malformedHeader(let o, _), .recordOverrun(let o, _, _), .recordTooShort(let o, _, _, _),
             .invalidValue(let o, _, _), .recordCountMismatch(let o, _, _):
            return o
        default: return nil
        }
    }
}

/// An error creating, writing or reading a recording. Its description is one
/// line naming the path, the problem (with the byte offset for damage) and
/// what to do.
public struct TraceFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var problem: TraceProblem
    /// For damage found without `salvage`: how many records read fine before
    /// it (the description then suggests --salvage). Nil otherwise.
    public var recordsBefore: Int?

    public init(path: String, problem: TraceProblem, recordsBefore: Int? = nil) {
        self.path = path; self.problem = problem; self.recordsBefore = recordsBefore
    }

    public var offset: Int? { problem.offset }

    public var description: String {
        let p = path
        switch problem {
        case .exists:
            return "\(p): exists; pass --force to overwrite it or choose another -o path"
        case .symbolicLink:
            return "\(p): is a symbolic link, which cowtrace never follows; remove it or choose another -o path"
        case .permissionDenied:
            return "cannot create \(p): permission denied; choose a writable -o path"
        case .readOnlyFileSystem:
            return "cannot create \(p): read-only file system; choose a writable -o path"
        case .noSuchDirectory:
            return "cannot create \(p): its directory does not exist; create the directory or choose another -o path"
        case .isDirectory:
            return "cannot create \(p): is a directory; give -o a file name"
        case .noSpace:
            return "cannot write \(p): no space left on device; free some space or choose another -o path (the blocks written so far stay readable)"
        case .headerTooLarge(let bytes):
            return "cannot write \(p): the header block would be \(bytes) bytes, over the \(TraceFormat.maxPayloadBytes >> 20) MiB limit; shorten the header fields"
        case .closed:
            return "\(p): the trace writer is already closed or failed before; this is a bug in the caller"
        case .system(let op, let e):
            return "cannot \(op) \(p): \(errnoText(e)); check the path and the disk"
        case .missing:
            return "\(p): no such file; check the path (cowtrace record -o writes it)"
        case .unreadable(let e):
            if e == EACCES || e == EPERM {
                return "cannot read \(p): permission denied; run as a user who may read it or copy it somewhere readable"
            }
            if e == EISDIR {
                return "cannot read \(p): is a directory; pass a file written by cowtrace record -o"
            }
            return "cannot read \(p): \(errnoText(e)); check the path"
        case .empty:
            return "\(p): empty file (0 bytes): the recorder wrote nothing before it stopped; record again"
        case .notCowtrace:
            return "\(p): not a cowtrace recording (no COWTRACE magic at offset 0); pass a file written by cowtrace record -o"
        case .truncatedPreamble(let present):
            return "\(p): truncated at offset \(present), inside the \(TraceFormat.preambleSize)-byte file preamble: the recorder was cut off while creating the file; record again"
        case .unsupportedVersion(let v):
            if v == 0 {
                return "\(p): format version 0 at offset 8 is not valid: the file is damaged; record again"
            }
            return "\(p): written by format version \(v); this cowtrace reads versions up to \(TraceFormat.version): upgrade cowtrace"
        case .truncatedBlockHeader(let o, let present):
            return "\(p): truncated block at offset \(o) (\(present) of \(TraceFormat.blockHeaderSize) block-header bytes present): the recorder was cut off mid-write" + hint
        case .truncatedBlock(let o, let declared, let present):
            return "\(p): truncated block at offset \(o) (header says \(declared) payload bytes, \(present) present): the recorder was cut off mid-write" + hint
        case .badBlockMagic(let o, let found):
            return "\(p): bad block magic at offset \(o) (0x\(String(found, radix: 16)), expected \"CTBK\"): the file is damaged" + hint
        case .headerChecksum(let o):
            return "\(p): block header checksum mismatch at offset \(o): the file is damaged" + hint
        case .payloadTooLarge(let o, let declared):
            return "\(p): block at offset \(o) declares \(declared) payload bytes, over the \(TraceFormat.maxPayloadBytes >> 20) MiB limit: the file is damaged" + hint
        case .payloadChecksum(let o, let seq):
            return "\(p): payload checksum mismatch in block \(seq) at offset \(o): the file is damaged" + hint
        case .firstBlockNotHeader(let o, let kind):
            return "\(p): the first block (offset \(o)) has kind \(kind), not the header block (1): the file is damaged or not a recording"
        case .unexpectedHeaderBlock(let o):
            return "\(p): a second header block at offset \(o): the file is damaged or two recordings were joined" + hint
        case .sequence(let o, let expected, let found):
            return "\(p): block at offset \(o) has sequence number \(found), expected \(expected): blocks are missing or out of order" + hint
        case .malformedHeader(let o, let detail):
            return "\(p): malformed header block at offset \(o) (\(detail)): the file is damaged or was written by a broken writer; record again"
        case .recordOverrun(let o, let length, let available):
            return "\(p): record at offset \(o) is \(length) bytes but only \(available) remain in its block: the file is damaged" + hint
        case .recordTooShort(let o, let type, let length, let needed):
            return "\(p): \(TraceFormat.recordTypeName(type)) record at offset \(o) is \(length) bytes, too short (needs \(needed)): the file is damaged" + hint
        case .invalidValue(let o, let field, let value):
            return "\(p): record at offset \(o) has invalid \(field) \(value): the file is damaged or was written by a newer cowtrace" + hint
        case .recordCountMismatch(let o, let declared, let found):
            return "\(p): block at offset \(o) says \(declared) records but holds \(found): the file is damaged" + hint
        }
    }

    private var hint: String {
        guard let n = recordsBefore else { return "" }
        switch n {
        case 0: return "; pass --salvage to read its header (there are no records before it)"
        case 1: return "; pass --salvage to read the 1 record before it"
        default: return "; pass --salvage to read the \(n) records before it"
        }
    }
}

private func errnoText(_ e: Int32) -> String {
    if let s = strerror(e) { return String(cString: s) }
    return "errno \(e)"
}
