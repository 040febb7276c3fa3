import Foundation
import XCTest
@testable import CowTraceFormat

final class RoundTripTests: XCTestCase {
    static let long = String(repeating: "x", count: 20_000)
    static let longCut = String(repeating: "x", count: TraceFormat.maxStringBytes)
    static let unicode = "zß水🐄"

    /// Every record type, every enum case, extreme integers, empty and long strings.
    /// Returns (written, expected after reading).
    static func extremeRecords() -> (written: [TraceRecord], expected: [TraceRecord]) {
        var written: [TraceRecord] = []
        var expected: [TraceRecord] = []
        func both(_ r: TraceRecord) { written.append(r); expected.append(r) }

        both(.process(ProcessRecord(time: .max, pid: .max, ppid: .min, uid: .max, comm: "",
                                    startBrk: .max, brk: 0, startStack: .max)))
        both(.process(ProcessRecord(time: 0, pid: .min, ppid: .max, uid: 0, comm: unicode,
                                    startBrk: 0, brk: .max, startStack: 0)))
        written.append(.process(ProcessRecord(time: 1, pid: 1, ppid: 0, uid: 0, comm: long, startBrk: 2, brk: 3, startStack: 4)))
        expected.append(.process(ProcessRecord(time: 1, pid: 1, ppid: 0, uid: 0, comm: longCut, startBrk: 2, brk: 3, startStack: 4)))

        both(.mapping(MappingRecord(pid: .max, start: .max, end: .max, permissions: "rw-p", offset: .max, inode: .max, path: "")))
        both(.mapping(MappingRecord(pid: .min, start: 0, end: 0, permissions: "", offset: 0, inode: 0, path: "[heap]")))
        written.append(.mapping(MappingRecord(pid: 5, start: 1, end: 2, permissions: long, offset: 3, inode: 4, path: long)))
        expected.append(.mapping(MappingRecord(pid: 5, start: 1, end: 2, permissions: longCut, offset: 3, inode: 4, path: longCut)))

        both(.pageRun(PageRunRecord(pid: .max, address: .max, count: .max, flags: PageRunFlags(rawValue: 0xFF), frame: .max)))
        both(.pageRun(PageRunRecord(pid: .min, address: 0, count: 0, flags: [], frame: 0)))
        both(.pageRun(PageRunRecord(pid: 3, address: 0x1000, count: 7, flags: [.present, .exclusive, .huge], frame: 42)))

        both(.fork(ForkEventRecord(time: .max, parent: .max, parentTid: .min, child: .max, comm: unicode)))
        both(.fork(ForkEventRecord(time: 0, parent: .min, parentTid: .max, child: .min, comm: "")))
        both(.exec(ExecEventRecord(time: .max, pid: .min, tid: .max, comm: "cowtrace-workload")))
        both(.exec(ExecEventRecord(time: 0, pid: .max, tid: .min, comm: "")))
        both(.exit(ExitEventRecord(time: .max, pid: .max, tid: .min, exitCode: .max)))
        both(.exit(ExitEventRecord(time: 0, pid: .min, tid: .max, exitCode: 0)))

        for op in AddressSpaceOp.allCases {
            both(.addressSpace(AddressSpaceRecord(time: .max, pid: .max, tid: .min, op: op,
                                                  args: [.max, 0, .max, 1, .max], result: .min)))
        }
        both(.addressSpace(AddressSpaceRecord(time: 0, pid: .min, tid: .max, op: .mmap, args: [0, 0, 0, 0, 0], result: .max)))
        // Fewer than 5 args are padded with 0, more are cut to 5.
        written.append(.addressSpace(AddressSpaceRecord(time: 1, pid: 1, tid: 1, op: .brk, args: [0x5000], result: 0x5000)))
        expected.append(.addressSpace(AddressSpaceRecord(time: 1, pid: 1, tid: 1, op: .brk, args: [0x5000, 0, 0, 0, 0], result: 0x5000)))
        written.append(.addressSpace(AddressSpaceRecord(time: 2, pid: 1, tid: 1, op: .mmap, args: [1, 2, 3, 4, 5, 6, 7], result: -12)))
        expected.append(.addressSpace(AddressSpaceRecord(time: 2, pid: 1, tid: 1, op: .mmap, args: [1, 2, 3, 4, 5], result: -12)))

        for kind in RecordedFaultKind.allCases {
            for cls in RecordedFaultClass.allCases {
                both(.fault(FaultRecord(time: .max, pid: .max, tid: .min, address: .max, ip: .max, kind: kind, faultClass: cls)))
            }
        }
        for mapping in RecordedMappingKind.allCases {
            both(.fault(FaultRecord(time: 7, pid: 8, tid: 9, address: 10, ip: 11, kind: .writeProtect, faultClass: .copy,
                                    mapping: mapping)))
        }
        both(.fault(FaultRecord(time: 0, pid: .min, tid: .max, address: 0, ip: 0, kind: .firstTouchRead, faultClass: .copy)))
        for cls in RecordedFaultClass.allCases {
            both(.resolve(ResolveRecord(time: .max, pid: .min, tid: .max, address: .max, faultClass: cls)))
        }
        both(.resolve(ResolveRecord(time: 0, pid: .max, tid: .min, address: 0, faultClass: .zeroFill)))

        both(.oomKill(OOMKillRecord(time: .max, victim: .max, comm: unicode, uid: .max, oomScoreAdj: .min,
                                    totalVMKB: .max, anonRSSKB: .max, fileRSSKB: .max, shmemRSSKB: .max,
                                    pgtablesKB: .max, constraint: "memcg /sys/fs/cgroup/a")))
        both(.oomKill(OOMKillRecord(time: 0, victim: .min, comm: "", uid: 0, oomScoreAdj: .max,
                                    totalVMKB: 0, anonRSSKB: 0, fileRSSKB: 0, shmemRSSKB: 0, pgtablesKB: 0, constraint: "")))
        written.append(.oomKill(OOMKillRecord(time: 1, victim: 2, comm: long, uid: 3, oomScoreAdj: 4, totalVMKB: 5,
                                              anonRSSKB: 6, fileRSSKB: 7, shmemRSSKB: 8, pgtablesKB: 9, constraint: long)))
        expected.append(.oomKill(OOMKillRecord(time: 1, victim: 2, comm: longCut, uid: 3, oomScoreAdj: 4, totalVMKB: 5,
                                               anonRSSKB: 6, fileRSSKB: 7, shmemRSSKB: 8, pgtablesKB: 9, constraint: longCut)))

        for reason in LossReason.allCases {
            both(.gap(GapRecord(time: .max, reason: reason, lost: .max)))
        }
        both(.gap(GapRecord(time: 0, reason: .ringBufferFull, lost: 0)))

        both(.counters(CountersRecord(time: .max, pid: .max, comm: unicode, wpFaults: .max, copies: .max, zeroFills: .max,
                                      fileCopies: .max, sharedWrites: .max, thpWPFaults: .max, forks: .max, execs: .max)))
        both(.counters(CountersRecord(time: 0, pid: .min, comm: "", wpFaults: 0, copies: 0, zeroFills: 0,
                                      fileCopies: 0, sharedWrites: 0, thpWPFaults: 0, forks: 0, execs: 0)))
        written.append(.counters(CountersRecord(time: 1, pid: 1, comm: long, wpFaults: 1, copies: 2, zeroFills: 3,
                                                fileCopies: 4, sharedWrites: 5, thpWPFaults: 6, forks: 7, execs: 8)))
        expected.append(.counters(CountersRecord(time: 1, pid: 1, comm: longCut, wpFaults: 1, copies: 2, zeroFills: 3,
                                                 fileCopies: 4, sharedWrites: 5, thpWPFaults: 6, forks: 7, execs: 8)))

        both(.end(EndRecord(time: 0, reason: "")))
        written.append(.end(EndRecord(time: .max, reason: long)))
        expected.append(.end(EndRecord(time: .max, reason: longCut)))
        return (written, expected)
    }

    func testEveryRecordTypeWithExtremeValuesRoundTrips() throws {
        let dir = try makeTemporaryDirectory(self)
        let (written, expected) = Self.extremeRecords()
        // 29 fixed ones plus one per enum case (ops; fault kind × class; mappings; resolve classes; loss reasons).
        let perCase = AddressSpaceOp.allCases.count + RecordedFaultKind.allCases.count * RecordedFaultClass.allCases.count
            + RecordedMappingKind.allCases.count + RecordedFaultClass.allCases.count + LossReason.allCases.count
        XCTAssertEqual(written.count, 29 + perCase)
        XCTAssertEqual(Set(written.map(\.typeID)), Set(1...13))
        for blockBytes in [64 << 10, 100] {
            let path = "\(dir)/extremes-\(blockBytes).ctr"
            let writer = try TraceFileWriter(path: path, header: sampleHeader(), blockBytes: blockBytes)
            for r in written { writer.append(r) }
            try writer.close()
            let contents = try TraceFileReader.read(path: path)
            XCTAssertEqual(contents.records.count, expected.count)
            for (i, (got, want)) in zip(contents.records, expected).enumerated() where got != want {
                XCTFail("record \(i) (blockBytes \(blockBytes)): got \(got), want \(want)")
            }
            XCTAssertEqual(contents.records, expected)
            XCTAssertNil(contents.cut)
            XCTAssertEqual(contents.blocks, writer.blocksWritten)
            XCTAssertEqual(contents.bytes, writer.bytesWritten)
            XCTAssertEqual(writer.recordsWritten, written.count)
            // In memory, the same bytes.
            let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            XCTAssertEqual(file, TraceFileWriter.encodedFile(header: sampleHeader(), records: written, blockBytes: blockBytes))
        }
    }

    func testLongStringIsCutOnACharacterBoundary() throws {
        // "é" is 2 UTF-8 bytes: 16383 bytes would split one, so 8191 characters remain.
        let s = String(repeating: "é", count: 10_000)
        let bytes = TraceFileWriter.encodedFile(header: sampleHeader(), records: [.end(EndRecord(time: 1, reason: s))])
        let contents = try TraceFileReader.read(bytes: bytes)
        guard case .end(let e) = contents.records.first else { return XCTFail("no end record") }
        XCTAssertEqual(e.reason.utf8.count, 16382)
        XCTAssertEqual(e.reason, String(repeating: "é", count: 8191))
    }

    func testEveryHeaderFieldRoundTrips() throws {
        let dir = try makeTemporaryDirectory(self)
        let headers = [
            sampleHeader(),
            TraceHeader(kernelRelease: "", hostname: "", attachTiers: [:], pageSize: .max,
                        realtimeOffsetNanoseconds: .min, startTime: .max, ramBytes: .max, swapBytes: .max,
                        overcommitMemory: .min, overcommitRatio: .max, overcommitKBytes: .max,
                        transparentHugePages: "", selection: "", toolVersion: ""),
            TraceHeader(kernelRelease: "6.1.0-27-amd64", hostname: RoundTripTests.unicode,
                        attachTiers: ["faults": "kprobe", "oom": "tracepoint", "fork": "tp_btf", "": "", "ü": "🐄"],
                        pageSize: 0, realtimeOffsetNanoseconds: .max, startTime: 0, ramBytes: 0, swapBytes: 1,
                        overcommitMemory: .max, overcommitRatio: .min, overcommitKBytes: 0,
                        transparentHugePages: "never", selection: "--all", toolVersion: "9.9.9-dev"),
        ]
        for (i, header) in headers.enumerated() {
            let path = "\(dir)/h\(i).ctr"
            let writer = try TraceFileWriter(path: path, header: header)
            writer.append(end())
            try writer.close()
            let contents = try TraceFileReader.read(path: path)
            XCTAssertEqual(contents.header, header)
            XCTAssertEqual(contents.header.version, 1)
            XCTAssertEqual(contents.header.attachTiers, header.attachTiers)
        }
    }

    func testLongHeaderStringsAreCut() throws {
        var header = sampleHeader()
        header.selection = String(repeating: "s", count: 70_000)
        let contents = try TraceFileReader.read(bytes: TraceFileWriter.encodedFile(header: header, records: [end()]))
        XCTAssertEqual(contents.header.selection, String(repeating: "s", count: 65535))
    }

    func testSchemaTableIsInTheFileAndMatchesTheLayout() throws {
        let contents = try TraceFileReader.read(bytes: TraceFileWriter.encodedFile(header: sampleHeader(), records: [end()]))
        XCTAssertEqual(contents.schema, TraceFormat.recordSchema)
        XCTAssertEqual(contents.schema.map(\.id), Array(1...13))
        XCTAssertEqual(contents.schema.map(\.name), ["process", "mapping", "pageRun", "fork", "exec", "exit", "addressSpace",
                                                     "fault", "resolve", "oomKill", "gap", "counters", "end"])
        // The schema's sizes must be those of the encoded records (with empty strings).
        let samples: [TraceRecord] = [
            .process(ProcessRecord(time: 1, pid: 2, ppid: 3, uid: 4, comm: "", startBrk: 5, brk: 6, startStack: 7)),
            .mapping(MappingRecord(pid: 1, start: 2, end: 3, permissions: "", offset: 4, inode: 5, path: "")),
            .pageRun(PageRunRecord(pid: 1, address: 2, count: 3, flags: [.present], frame: 4)),
            .fork(ForkEventRecord(time: 1, parent: 2, parentTid: 3, child: 4, comm: "")),
            .exec(ExecEventRecord(time: 1, pid: 2, tid: 3, comm: "")),
            .exit(ExitEventRecord(time: 1, pid: 2, tid: 3, exitCode: 4)),
            .addressSpace(AddressSpaceRecord(time: 1, pid: 2, tid: 3, op: .munmap, args: [], result: 0)),
            fault(1),
            .resolve(ResolveRecord(time: 1, pid: 2, tid: 3, address: 4, faultClass: .copy)),
            .oomKill(OOMKillRecord(time: 1, victim: 2, comm: "", uid: 3, oomScoreAdj: 4, totalVMKB: 5, anonRSSKB: 6,
                                   fileRSSKB: 7, shmemRSSKB: 8, pgtablesKB: 9, constraint: "")),
            .gap(GapRecord(time: 1, reason: .infoMapFull, lost: 2)),
            .counters(CountersRecord(time: 1, pid: 2, comm: "", wpFaults: 3, copies: 4, zeroFills: 5, fileCopies: 6,
                                     sharedWrites: 7, thpWPFaults: 8, forks: 9, execs: 10)),
            end(),
        ]
        let widths = ["u8": 1, "u16": 2, "u32": 4, "u64": 8, "i32": 4, "i64": 8, "string": 2, "u64[5]": 40]
        for (schema, sample) in zip(TraceFormat.recordSchema, samples) {
            XCTAssertEqual(schema.id, sample.typeID)
            var size = 4
            for field in schema.fields {
                let base = String(field.type.split(separator: " ").first ?? "")
                guard let width = widths[base] else { XCTFail("unknown type \(field.type)"); continue }
                size += width
            }
            var sampleWithEmptyStrings = sample
            if case .end = sample { sampleWithEmptyStrings = .end(EndRecord(time: 1, reason: "")) }
            let encoded = encodePayload([sampleWithEmptyStrings])
            XCTAssertEqual(encoded.count, size, "\(schema.name)")
            // Optional trailing fields (fault's mapping byte) are written but not required.
            let optional = schema.fields.filter { $0.name.contains("optional") }.count
            XCTAssertEqual(TraceFormat.minimumRecordLength[schema.id], size - optional, "\(schema.name)")
            XCTAssertEqual(Int(encoded[2]) | Int(encoded[3]) << 8, size)
        }
    }

    func testFaultRecordIs39Bytes() throws {
        XCTAssertEqual(encodePayload([fault(1)]).count, 39)
        XCTAssertEqual(faultRecordBytes, 39)
        // A 38-byte fault record (written before the mapping byte existed) reads with mapping .unknown.
        var old = encodePayload([fault(1)])
        old.removeLast()
        old[2] = 38
        let bytes = filePrefix() + makeBlock(kind: 2, sequence: 1, payload: old, count: 1)
        XCTAssertEqual(try TraceFileReader.read(bytes: bytes).records, [fault(1, mapping: .unknown)])
        XCTAssertEqual(encodePayload([.resolve(ResolveRecord(time: 1, pid: 2, tid: 3, address: 4, faultClass: .copy))]).count, 29)
    }

    func testMultiBlockFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/multi.ctr"
        // 10 fault records per block.
        let writer = try TraceFileWriter(path: path, header: sampleHeader(), blockBytes: 10 * faultRecordBytes)
        var written: [TraceRecord] = []
        for i in 0..<1000 { written.append(fault(i, cls: i % 3 == 0 ? .copy : .unresolved)) }
        written.append(end())
        for r in written { writer.append(r) }
        XCTAssertEqual(writer.blocksWritten, 101)      // header + 100 full blocks, written as they filled
        XCTAssertEqual(writer.recordsWritten, 1000)
        XCTAssertEqual(writer.recordsBuffered, 1)
        try writer.close()
        XCTAssertEqual(writer.blocksWritten, 102)
        XCTAssertEqual(writer.recordsWritten, 1001)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        XCTAssertEqual(writer.bytesWritten, size)
        let headerBlock = filePrefix().count
        XCTAssertEqual(size, headerBlock + 100 * (32 + 10 * faultRecordBytes) + 32 + 28)

        let contents = try TraceFileReader.read(path: path)
        XCTAssertEqual(contents.records, written)
        XCTAssertEqual(contents.blocks, 102)
        XCTAssertNil(contents.cut)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let offsets = blockOffsets(bytes)
        XCTAssertEqual(offsets.count, 102)
        for (i, o) in offsets.enumerated() {
            XCTAssertEqual(bytes[o..<o + 4], [0x43, 0x54, 0x42, 0x4B][...])
            XCTAssertEqual(le32(bytes, o + 8), UInt32(i))   // sequence numbers 0, 1, 2, ...
            XCTAssertEqual(le32(bytes, o + 4), i == 0 ? 1 : 2)
        }
    }

    func testRecordLargerThanABlockGetsABlockOfItsOwn() throws {
        let big = TraceRecord.mapping(MappingRecord(pid: 1, start: 0, end: 4096, permissions: "r--p", offset: 0, inode: 7,
                                                    path: String(repeating: "/d", count: 100)))
        let records = [fault(1), fault(2), big, fault(3), end()]
        let bytes = TraceFileWriter.encodedFile(header: sampleHeader(), records: records, blockBytes: 100)
        let offsets = blockOffsets(bytes)
        // header; [fault, fault]; [mapping]; [fault, end]
        XCTAssertEqual(offsets.count, 4)
        XCTAssertEqual(offsets.dropFirst().map { le32(bytes, $0 + 20) }, [2, 1, 2])
        XCTAssertEqual(le32(bytes, offsets[2] + 16), 4 + 4 + 8 + 8 + 6 + 8 + 8 + 202)
        let contents = try TraceFileReader.read(bytes: bytes)
        XCTAssertEqual(contents.records, records)
        XCTAssertEqual(contents.blocks, 4)
    }

    func testGapRecordsKeepTheirPlace() throws {
        let records: [TraceRecord] = [
            fault(1), .gap(GapRecord(time: 1002, reason: .ringBufferFull, lost: 4711)), fault(3),
            .gap(GapRecord(time: 1004, reason: .processMapFull, lost: 1)),
            .gap(GapRecord(time: 1005, reason: .infoMapFull, lost: UInt64.max)), end(),
        ]
        let contents = try TraceFileReader.read(bytes: TraceFileWriter.encodedFile(header: sampleHeader(), records: records))
        XCTAssertEqual(contents.records, records)
        let gaps = contents.records.compactMap { r -> GapRecord? in if case .gap(let g) = r { return g } else { return nil } }
        XCTAssertEqual(gaps.map(\.lost), [4711, 1, UInt64.max])
        XCTAssertEqual(gaps.map(\.reason), [.ringBufferFull, .processMapFull, .infoMapFull])
    }

    func testStreamingGivesTheSameRecords() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/stream.ctr"
        let (written, expected) = Self.extremeRecords()
        let writer = try TraceFileWriter(path: path, header: sampleHeader(), blockBytes: 300)
        for r in written { writer.append(r) }
        try writer.close()
        var streamed: [TraceRecord] = []
        let summary = try TraceFileReader.forEachRecord(path: path) { streamed.append($0) }
        XCTAssertEqual(streamed, expected)
        XCTAssertEqual(summary.records, expected.count)
        XCTAssertEqual(summary.blocks, writer.blocksWritten)
        XCTAssertEqual(summary.header, sampleHeader())
        XCTAssertNil(summary.cut)

        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        var fromBytes = 0
        let s2 = try TraceFileReader.forEachRecord(bytes: bytes) { _ in fromBytes += 1 }
        XCTAssertEqual(fromBytes, expected.count)
        XCTAssertEqual(s2, summary)

        struct Stop: Error {}
        var seen = 0
        XCTAssertThrowsError(try TraceFileReader.forEachRecord(path: path) { _ in
            seen += 1
            if seen == 3 { throw Stop() }
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(seen, 3)
    }

    func testCutFileWithoutEndRecordReadsWithNoEndRecord() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/cut.ctr"
        let writer = try TraceFileWriter(path: path, header: sampleHeader(), blockBytes: 10 * faultRecordBytes)
        for i in 0..<25 { writer.append(fault(i)) }
        try writer.flush(fsync: true)
        // The recorder is "killed" here: no end record, nothing more written.
        let size = writer.bytesWritten
        let contents = try TraceFileReader.read(path: path)
        XCTAssertEqual(contents.records, (0..<25).map { fault($0) })
        XCTAssertEqual(contents.cut, .noEndRecord(offset: size))
        XCTAssertEqual(contents.bytes, size)
        XCTAssertEqual(contents.blocks, 4)
        // Salvage reads it the same way.
        XCTAssertEqual(try TraceFileReader.read(path: path, salvage: true), contents)
        // A file with the header block only is cut too.
        let empty = try TraceFileReader.read(bytes: filePrefix())
        XCTAssertEqual(empty.records, [])
        XCTAssertEqual(empty.cut, .noEndRecord(offset: filePrefix().count))
        try writer.close()
    }
}
