// The on-disk layout of a cowtrace recording (`cowtrace record -o FILE`),
// format version 1. docs/trace-format.md says the same with examples.
//
// All integers are little-endian. Offsets below are relative to the start of
// the structure they describe.
//
// FILE     = PREAMBLE BLOCK*
// PREAMBLE = 16 bytes
//     0  8  magic "COWTRACE" (ASCII)
//     8  u16 format version (1)
//    10  u16 flags (0; readers ignore unknown flags)
//    12  u32 reserved (0)
// BLOCK    = BLOCK_HEADER PAYLOAD
// BLOCK_HEADER = 32 bytes
//     0  u32 magic "CTBK" (the bytes 43 54 42 4B)
//     4  u32 kind: 1 = header block, 2 = records block (other kinds: skipped)
//     8  u64 sequence number: 0 for the first block, then 1, 2, ...
//    16  u32 payload length in bytes (at most 16 MiB; more is corruption)
//    20  u32 record count (records blocks: records in the payload;
//            header block: header entries)
//    24  u32 zlib crc32 of the payload
//    28  u32 zlib crc32 of header bytes 0..<28
//
// Block 0 is the header block; every later block has kind 2 (records). The
// writer emits each block with one write(2), so a recorder killed at any
// moment leaves a file that ends at a block boundary (or, at worst, inside
// the last block, which the checksums and lengths reveal).
//
// HEADER PAYLOAD
//     u16 entry count, then that many entries:
//         u16 key length, key (UTF-8)
//         u8  value type: 1 = u64, 2 = i64, 3 = string, 4 = string map
//         u32 value length, value bytes:
//             u64 / i64: 8 bytes
//             string:    UTF-8 bytes (the value length is the byte count)
//             map:       u32 pair count, then pairs of
//                        (u16 length + UTF-8 key, u16 length + UTF-8 value)
//       Readers ignore unknown keys (and unknown value types: the value
//       length skips them); missing keys read as 0 / "" / [:].
//     u16 schema count, then that many record schemas:
//         u8  record type id
//         u16 name length, name (UTF-8)
//         u8  field count, then fields:
//             u16 name length, name; u16 type length, type (UTF-8), where
//             type starts with one of u8 u16 u32 u64 i32 i64 string u64[5]
//             ("string" = u16 byte length + UTF-8 bytes), optionally
//             followed by " enum Name {1 a, 2 b}" / " flags Name {bit0 a, ...}".
//       The schema names every record type and its fields in order, so a
//       reader without this code can tell what is in the file.
//
// RECORDS PAYLOAD: records back to back, each
//     u8  record type id, u8 reserved (0), u16 total record length (with
//         these 4 bytes), then the fields of the Swift struct in declaration
//         order, fixed width, strings as u16 length + UTF-8 (cut at
//         `TraceFormat.maxStringBytes` on a character boundary);
//         AddressSpaceRecord.args is exactly 5 u64 (padded with 0 / cut).
//     Readers skip record types they do not know by their length, and
//     ignore bytes after the fields they know (fields appended in later
//     versions). A record shorter than its type's fields is corruption.
//
//   id name          size (with empty strings)
//    1 process       50    time u64, pid i32, ppid i32, uid u32, comm string,
//                          startBrk u64, brk u64, startStack u64
//    2 mapping       44    pid i32, start u64, end u64, permissions string,
//                          offset u64, inode u64, path string
//    3 pageRun       29    pid i32, address u64, count u32, flags u8, frame u64
//    4 fork          26    time u64, parent i32, parentTid i32, child i32, comm string
//    5 exec          22    time u64, pid i32, tid i32, comm string
//    6 exit          24    time u64, pid i32, tid i32, exitCode u32
//    7 addressSpace  69    time u64, pid i32, tid i32, op u8, args u64[5], result i64
//    8 fault         38    time u64, pid i32, tid i32, address u64, ip u64, kind u8, faultClass u8,
//                          then (39 bytes, optional) mapping u8 (RecordedMappingKind; absent: unknown)
//    9 resolve       29    time u64, pid i32, tid i32, address u64, faultClass u8
//   10 oomKill       68    time u64, victim i32, comm string, uid u32, oomScoreAdj i32,
//                          totalVMKB u64, anonRSSKB u64, fileRSSKB u64, shmemRSSKB u64,
//                          pgtablesKB u64, constraint string
//   11 gap           21    time u64, reason u8, lost u64
//   12 counters      82    time u64, pid i32, comm string, wpFaults u64, copies u64,
//                          zeroFills u64, fileCopies u64, sharedWrites u64,
//                          thpWPFaults u64, forks u64, execs u64
//   13 end           14    time u64, reason string
//
// A recording that ends cleanly has an `end` record. A file that ends at a
// block boundary without one was cut off (recorder killed): its records are
// fine and the reader reports `TraceCut.noEndRecord`.

import CCRC32

/// crc32 of `count` bytes at `pointer` (zlib's CRC-32; CCRC32 folds it with
/// carry-less multiplication where the CPU can, about three times zlib's speed here).
@inline(__always)
internal func traceCRC32(_ pointer: UnsafeRawPointer?, _ count: Int) -> UInt32 {
    guard let pointer = pointer, count > 0 else { return 0 }
    return ccrc32(0, pointer, count)
}

/// Constants and the self-description of format version 1.
public enum TraceFormat {
    /// "COWTRACE".
    public static let fileMagic: [UInt8] = Array("COWTRACE".utf8)
    /// The format version this code writes, and the newest it reads.
    public static let version: UInt16 = TraceHeader.currentVersion
    public static let preambleSize = 16
    /// "CTBK" as a little-endian u32 (bytes 43 54 42 4B).
    public static let blockMagic: UInt32 = 0x4B42_5443
    public static let blockHeaderSize = 32
    public static let headerBlockKind: UInt32 = 1
    public static let recordsBlockKind: UInt32 = 2
    /// Payloads above this are corruption (the writer never makes them).
    public static let maxPayloadBytes = 16 << 20
    /// Strings in records are cut to this many UTF-8 bytes on write.
    public static let maxStringBytes = 16383
    /// Strings in the header (and map keys / values) are cut to this many bytes.
    public static let maxHeaderStringBytes = 65535
    /// The record header: u8 type, u8 reserved, u16 total length.
    public static let recordHeaderSize = 4

    /// Record type ids: the one place they are written (the writer's
    /// `TraceRecord.typeID`, the reader, the schema table and the minimum
    /// lengths all use these).
    public enum RecordType: UInt8, Sendable, CaseIterable {
        case process = 1, mapping, pageRun, fork, exec, exit, addressSpace, fault, resolve,
             oomKill, gap, counters, end
    }

    /// Header value types.
    public enum ValueType: UInt8, Sendable {
        case u64 = 1, i64 = 2, string = 3, stringMap = 4
    }

    /// Header keys, one per TraceHeader field (the version is in the preamble).
    public enum HeaderKey {
        public static let kernelRelease = "kernelRelease"
        public static let hostname = "hostname"
        public static let attachTiers = "attachTiers"
        public static let pageSize = "pageSize"
        public static let realtimeOffsetNanoseconds = "realtimeOffsetNanoseconds"
        public static let startTime = "startTime"
        public static let ramBytes = "ramBytes"
        public static let swapBytes = "swapBytes"
        public static let overcommitMemory = "overcommitMemory"
        public static let overcommitRatio = "overcommitRatio"
        public static let overcommitKBytes = "overcommitKBytes"
        public static let transparentHugePages = "transparentHugePages"
        public static let selection = "selection"
        public static let toolVersion = "toolVersion"
    }

    /// Minimum record length (record header + fields, empty strings) by type id.
    static let minimumRecordLength: [UInt8: Int] = {
        let lengths: [RecordType: Int] = [
            .process: 50, .mapping: 44, .pageRun: 29, .fork: 26, .exec: 22, .exit: 24, .addressSpace: 69,
            .fault: 38, .resolve: 29, .oomKill: 68, .gap: 21, .counters: 82, .end: 14,
        ]
        return Dictionary(uniqueKeysWithValues: lengths.map { ($0.key.rawValue, $0.value) })
    }()

    /// The schema table written into every header block.
    public static let recordSchema: [TraceRecordSchema] = {
        func f(_ name: String, _ type: String) -> TraceFieldSchema { TraceFieldSchema(name: name, type: type) }
        // Enum annotations follow the Swift enums, so new cases show up by themselves.
        let faultClass = enumType(FaultClass.kernelCases, "RecordedFaultClass")
        let faultKind = enumType(RecordedFaultKind.self, "RecordedFaultKind")
        let op = enumType(AddressSpaceOp.self, "AddressSpaceOp")
        let loss = enumType(LossReason.self, "LossReason")
        let mapping = enumType(RecordedMappingKind.self, "RecordedMappingKind")
        let pageFlags = "u8 flags PageRunFlags {bit0 present, bit1 swapped, bit2 fileOrShared, bit3 exclusive, bit4 zeroPage, bit5 huge}"
        return [
            TraceRecordSchema(id: RecordType.process.rawValue, name: "process", fields: [
                f("time", "u64"), f("pid", "i32"), f("ppid", "i32"), f("uid", "u32"), f("comm", "string"),
                f("startBrk", "u64"), f("brk", "u64"), f("startStack", "u64"),
            ]),
            TraceRecordSchema(id: RecordType.mapping.rawValue, name: "mapping", fields: [
                f("pid", "i32"), f("start", "u64"), f("end", "u64"), f("permissions", "string"),
                f("offset", "u64"), f("inode", "u64"), f("path", "string"),
            ]),
            TraceRecordSchema(id: RecordType.pageRun.rawValue, name: "pageRun", fields: [
                f("pid", "i32"), f("address", "u64"), f("count", "u32"), f("flags", pageFlags), f("frame", "u64"),
            ]),
            TraceRecordSchema(id: RecordType.fork.rawValue, name: "fork", fields: [
                f("time", "u64"), f("parent", "i32"), f("parentTid", "i32"), f("child", "i32"), f("comm", "string"),
            ]),
            TraceRecordSchema(id: RecordType.exec.rawValue, name: "exec", fields: [
                f("time", "u64"), f("pid", "i32"), f("tid", "i32"), f("comm", "string"),
            ]),
            TraceRecordSchema(id: RecordType.exit.rawValue, name: "exit", fields: [
                f("time", "u64"), f("pid", "i32"), f("tid", "i32"), f("exitCode", "u32"),
            ]),
            TraceRecordSchema(id: RecordType.addressSpace.rawValue, name: "addressSpace", fields: [
                f("time", "u64"), f("pid", "i32"), f("tid", "i32"), f("op", op), f("args", "u64[5]"), f("result", "i64"),
            ]),
            TraceRecordSchema(id: RecordType.fault.rawValue, name: "fault", fields: [
                f("time", "u64"), f("pid", "i32"), f("tid", "i32"), f("address", "u64"), f("ip", "u64"),
                f("kind", faultKind), f("faultClass", faultClass), f("mapping (optional, absent = unknown)", mapping),
            ]),
            TraceRecordSchema(id: RecordType.resolve.rawValue, name: "resolve", fields: [
                f("time", "u64"), f("pid", "i32"), f("tid", "i32"), f("address", "u64"), f("faultClass", faultClass),
            ]),
            TraceRecordSchema(id: RecordType.oomKill.rawValue, name: "oomKill", fields: [
                f("time", "u64"), f("victim", "i32"), f("comm", "string"), f("uid", "u32"), f("oomScoreAdj", "i32"),
                f("totalVMKB", "u64"), f("anonRSSKB", "u64"), f("fileRSSKB", "u64"), f("shmemRSSKB", "u64"),
                f("pgtablesKB", "u64"), f("constraint", "string"),
            ]),
            TraceRecordSchema(id: RecordType.gap.rawValue, name: "gap", fields: [
                f("time", "u64"), f("reason", loss), f("lost", "u64"),
            ]),
            TraceRecordSchema(id: RecordType.counters.rawValue, name: "counters", fields: [
                f("time", "u64"), f("pid", "i32"), f("comm", "string"), f("wpFaults", "u64"), f("copies", "u64"),
                f("zeroFills", "u64"), f("fileCopies", "u64"), f("sharedWrites", "u64"), f("thpWPFaults", "u64"),
                f("forks", "u64"), f("execs", "u64"),
            ]),
            TraceRecordSchema(id: RecordType.end.rawValue, name: "end", fields: [
                f("time", "u64"), f("reason", "string"),
            ]),
        ]
    }()

    /// "u8 enum Name {0 a, 1 b}" from the cases of a UInt8 enum.
    static func enumType<E: CaseIterable & RawRepresentable>(_ type: E.Type, _ name: String) -> String
    where E.RawValue == UInt8 {
        enumType(Array(E.allCases), name)
    }

    /// "u8 enum Name {0 a, 1 b}" from some cases of a UInt8 enum.
    static func enumType<E: RawRepresentable>(_ cases: [E], _ name: String) -> String where E.RawValue == UInt8 {
        "u8 enum \(name) {" + cases.map { "\($0.rawValue) \(String(describing: $0))" }.joined(separator: ", ") + "}"
    }

    /// Name of a record type id ("fault"), or "type N" for unknown ids.
    public static func recordTypeName(_ id: UInt8) -> String {
        if let schema = recordSchema.first(where: { $0.id == id }) { return schema.name }
        return "type \(id)"
    }
}

/// One field of a record type, as named in a file's schema table.
public struct TraceFieldSchema: Equatable, Sendable {
    public var name: String
    /// "u64", "i32", "string", "u64[5]", "u8 enum RecordedFaultKind {...}", ...
    public var type: String
    public init(name: String, type: String) { self.name = name; self.type = type }
}

/// A record type as named in a file's schema table.
public struct TraceRecordSchema: Equatable, Sendable {
    public var id: UInt8
    public var name: String
    public var fields: [TraceFieldSchema]
    public init(id: UInt8, name: String, fields: [TraceFieldSchema]) {
        self.id = id; self.name = name; self.fields = fields
    }
}

extension TraceRecord {
    /// The record's type in the file.
    public var recordType: TraceFormat.RecordType {
        switch self {
        case .process: return .process
        case .mapping: return .mapping
        case .pageRun: return .pageRun
        case .fork: return .fork
        case .exec: return .exec
        case .exit: return .exit
        case .addressSpace: return .addressSpace
        case .fault: return .fault
        case .resolve: return .resolve
        case .oomKill: return .oomKill
        case .gap: return .gap
        case .counters: return .counters
        case .end: return .end
        }
    }

    /// The record's type id in the file.
    public var typeID: UInt8 { recordType.rawValue }
}
