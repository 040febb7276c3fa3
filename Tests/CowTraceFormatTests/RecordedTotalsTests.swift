import XCTest
@testable import CowTraceFormat

/// RecordedTotals: the kernel's classes folded from hand-built record sequences.
final class RecordedTotalsTests: XCTestCase {
    private func wp(_ t: UInt64, pid: Int32, tid: Int32? = nil, address: UInt64 = 0x1000,
                    cls: RecordedFaultClass = .unresolved) -> TraceRecord {
        .fault(FaultRecord(time: t, pid: pid, tid: tid ?? pid, address: address, ip: 0x400000,
                           kind: .writeProtect, faultClass: cls))
    }

    private func touchFault(_ t: UInt64, pid: Int32, tid: Int32? = nil, write: Bool = true) -> TraceRecord {
        .fault(FaultRecord(time: t, pid: pid, tid: tid ?? pid, address: 0x2000, ip: 0x400000,
                           kind: write ? .firstTouchWrite : .firstTouchRead, faultClass: .unresolved))
    }

    private func res(_ t: UInt64, pid: Int32, tid: Int32? = nil, _ cls: RecordedFaultClass) -> TraceRecord {
        .resolve(ResolveRecord(time: t, pid: pid, tid: tid ?? pid, address: 0x1000, faultClass: cls))
    }

    private func proc(_ t: UInt64, pid: Int32, ppid: Int32, comm: String) -> TraceRecord {
        .process(ProcessRecord(time: t, pid: pid, ppid: ppid, uid: 0, comm: comm, startBrk: 0, brk: 0, startStack: 0))
    }

    private func fork(_ t: UInt64, parent: Int32, child: Int32, comm: String = "w") -> TraceRecord {
        .fork(ForkEventRecord(time: t, parent: parent, parentTid: parent, child: child, comm: comm))
    }

    private func counters(_ t: UInt64, pid: Int32, comm: String = "", wp: UInt64 = 0, copies: UInt64 = 0,
                          zeroFills: UInt64 = 0, fileCopies: UInt64 = 0, forks: UInt64 = 0) -> TraceRecord {
        .counters(CountersRecord(time: t, pid: pid, comm: comm, wpFaults: wp, copies: copies, zeroFills: zeroFills,
                                 fileCopies: fileCopies, sharedWrites: 0, thpWPFaults: 0, forks: forks, execs: 0))
    }

    func testNoResolveIsAReuseAndEachResolveSetsTheClass() {
        let totals = RecordedTotals(records: [
            proc(10, pid: 100, ppid: 1, comm: "app"),
            wp(20, pid: 100),                       // reuse (no resolve)
            wp(30, pid: 100), res(31, pid: 100, .copy),
            wp(40, pid: 100), res(41, pid: 100, .zeroFill),
            wp(50, pid: 100, cls: .sharedWrite),    // class on the fault record (fentry tier)
            wp(60, pid: 100), res(61, pid: 100, .fileCopy),
            wp(70, pid: 100),                       // reuse, settled at the end
        ])
        let p = try! XCTUnwrap(totals.processes[100])
        XCTAssertEqual(p.comm, "app")
        XCTAssertEqual(p.classes, RecordedClassCounts(copies: 1, reuses: 2, zeroFills: 1, fileCopies: 1, sharedWrites: 1))
        XCTAssertEqual(p.writeProtectFaults, 6)
        XCTAssertEqual(p.inferredReuses, 2)
        XCTAssertEqual(p.pagesCopied, 2)
        XCTAssertEqual(p.firstTime, 10)
        XCTAssertEqual(p.lastTime, 70)
        XCTAssertEqual(totals.total.classes.total, 6)
    }

    func testTheLastResolveWins() {
        let totals = RecordedTotals(records: [
            wp(10, pid: 7), res(11, pid: 7, .copy), res(12, pid: 7, .fileCopy),
            wp(20, pid: 7), res(21, pid: 7, .copy),
        ])
        XCTAssertEqual(totals.processes[7]?.classes, RecordedClassCounts(copies: 1, fileCopies: 1))
    }

    /// A resolve after the thread's next fault belongs to that next fault,
    /// and a first-touch fault closes the open write-protect fault too.
    func testTheNextFaultOfTheThreadClosesTheFault() {
        let totals = RecordedTotals(records: [
            wp(10, pid: 7),
            touchFault(11, pid: 7),
            res(12, pid: 7, .copy),     // no open fault: unmatched
            wp(13, pid: 7), wp(14, pid: 7), res(15, pid: 7, .copy),
        ])
        let p = totals.processes[7]!
        XCTAssertEqual(p.classes, RecordedClassCounts(copies: 1, reuses: 2))
        XCTAssertEqual(p.firstTouchFaults, 1)
        XCTAssertEqual(totals.unmatchedResolves, 1)
    }

    /// A not-present write the kernel resolved as a file copy (do_cow_fault)
    /// is a write-protect fault of that class, as the kernel's wp_faults
    /// counts it; undone (a swap-in after all), or never resolved, it is not.
    func testAFirstTouchWriteResolvedAsFileCopyCounts() {
        let totals = RecordedTotals(records: [
            touchFault(10, pid: 7), res(11, pid: 7, .fileCopy),
            touchFault(20, pid: 7), res(21, pid: 7, .fileCopy), res(22, pid: 7, .unresolved),
            touchFault(30, pid: 7),
            touchFault(40, pid: 7, write: false), res(41, pid: 7, .fileCopy),   // a read: unmatched
            touchFault(50, pid: 7), res(51, pid: 7, .fileCopy),                 // settled at the end
        ])
        let p = totals.processes[7]!
        XCTAssertEqual(p.classes, RecordedClassCounts(fileCopies: 2))
        XCTAssertEqual(p.writeProtectFaults, 2)
        XCTAssertEqual(p.inferredReuses, 0)
        XCTAssertEqual(p.firstTouchFaults, 5)
        XCTAssertEqual(totals.unmatchedResolves, 1)
    }

    func testInterleavedThreadsKeepTheirOwnFaults() {
        // Two threads of pid 50 and one of pid 60, resolves interleaved.
        let totals = RecordedTotals(records: [
            wp(10, pid: 50, tid: 50),
            wp(11, pid: 50, tid: 51),
            wp(12, pid: 60, tid: 60),
            res(13, pid: 50, tid: 51, .copy),
            res(14, pid: 60, tid: 60, .zeroFill),
            wp(15, pid: 50, tid: 51),                // tid 51: its second fault, a reuse
            res(16, pid: 50, tid: 50, .copy),       // still tid 50's first fault
            res(17, pid: 50, tid: 50, .fileCopy),
        ])
        XCTAssertEqual(totals.processes[50]?.classes, RecordedClassCounts(copies: 1, reuses: 1, fileCopies: 1))
        XCTAssertEqual(totals.processes[60]?.classes, RecordedClassCounts(zeroFills: 1))
        XCTAssertEqual(totals.total.classes, RecordedClassCounts(copies: 1, reuses: 1, zeroFills: 1, fileCopies: 1))
        XCTAssertEqual(totals.unmatchedResolves, 0)
    }

    /// Blocks are not strictly in time order: the fold sorts first.
    func testUnsortedInputIsSortedByTime() {
        let inOrder: [TraceRecord] = [
            proc(5, pid: 1, ppid: 0, comm: "init"),
            .mapping(MappingRecord(pid: 1, start: 0x1000, end: 0x2000, permissions: "rw-p", offset: 0, inode: 0, path: "")),
            wp(10, pid: 1), res(11, pid: 1, .copy),
            wp(20, pid: 1),
            wp(30, pid: 1), res(31, pid: 1, .copy), res(32, pid: 1, .fileCopy),
        ]
        let shuffled: [TraceRecord] = [
            wp(30, pid: 1), res(32, pid: 1, .fileCopy),
            proc(5, pid: 1, ppid: 0, comm: "init"),
            .mapping(MappingRecord(pid: 1, start: 0x1000, end: 0x2000, permissions: "rw-p", offset: 0, inode: 0, path: "")),
            res(11, pid: 1, .copy), wp(20, pid: 1), res(31, pid: 1, .copy), wp(10, pid: 1),
        ]
        let sorted = RecordedTotals.sortedByTime(shuffled)
        XCTAssertEqual(sorted, inOrder)
        let a = RecordedTotals(records: inOrder), b = RecordedTotals(records: shuffled)
        XCTAssertEqual(a, b)
        XCTAssertEqual(b.processes[1]?.classes, RecordedClassCounts(copies: 1, reuses: 1, fileCopies: 1))
    }

    func testForksExecsExitsCommsAndTheForkTree() {
        let totals = RecordedTotals(records: [
            proc(1, pid: 10, ppid: 1, comm: "shell"),
            proc(1, pid: 11, ppid: 10, comm: "old-child"),
            fork(100, parent: 10, child: 20, comm: "shell"),
            .exec(ExecEventRecord(time: 110, pid: 20, tid: 20, comm: "redis<&>\"")),
            fork(120, parent: 20, child: 30, comm: "redis<&>\""),
            fork(130, parent: 10, child: 21, comm: "shell"),
            .exit(ExitEventRecord(time: 200, pid: 30, tid: 30, exitCode: 3 << 8)),
            counters(300, pid: 30, comm: "redis-rdb"),
        ])
        XCTAssertEqual(totals.processes[10]?.forks, 2)
        XCTAssertEqual(totals.processes[20]?.forks, 1)
        XCTAssertEqual(totals.processes[20]?.execs, 1)
        XCTAssertEqual(totals.processes[20]?.comm, "redis<&>\"")
        XCTAssertEqual(totals.processes[30]?.comm, "redis-rdb")
        XCTAssertEqual(totals.processes[30]?.ppid, 20)
        XCTAssertEqual(totals.processes[30]?.forkTime, 120)
        XCTAssertEqual(totals.processes[30]?.exitCode, 768)
        XCTAssertEqual(totals.processes[30]?.exitTime, 200)
        XCTAssertNil(totals.processes[20]?.exitCode)
        XCTAssertEqual(totals.forks, [
            RecordedFork(parent: 10, child: 11, time: nil),
            RecordedFork(parent: 10, child: 20, time: 100),
            RecordedFork(parent: 20, child: 30, time: 120),
            RecordedFork(parent: 10, child: 21, time: 130),
        ])
        XCTAssertEqual(totals.children(of: 10).map(\.child), [11, 20, 21])
        XCTAssertEqual(totals.roots, [10])
        XCTAssertEqual(totals.total.forks, 3)
    }

    func testGapsCountersAndMismatches() {
        let totals = RecordedTotals(records: [
            wp(10, pid: 5), res(11, pid: 5, .copy),
            wp(12, pid: 5), res(13, pid: 5, .copy),
            .gap(GapRecord(time: 14, reason: .ringBufferFull, lost: 7)),
            counters(15, pid: 5, wp: 1, copies: 1),
            .gap(GapRecord(time: 16, reason: .ringBufferFull, lost: 3)),
            .gap(GapRecord(time: 16, reason: .processMapFull, lost: 1)),
            counters(20, pid: 5, wp: 3, copies: 2),
            .end(EndRecord(time: 30, reason: "command exited")),
        ])
        XCTAssertEqual(totals.lostEvents, 11)
        XCTAssertEqual(totals.lostByReason, [.ringBufferFull: 10, .processMapFull: 1])
        XCTAssertEqual(totals.lastCounters[5]?.time, 20)
        let p = totals.processes[5]!
        XCTAssertEqual(p.counters?.copies, 2)
        XCTAssertEqual(p.counterMismatches.map(\.field), ["wp_faults"])
        XCTAssertEqual(p.counterMismatches.first?.events, 2)
        XCTAssertEqual(p.counterMismatches.first?.kernel, 3)
        XCTAssertEqual(totals.end?.reason, "command exited")
    }

    func testCopiesOverTimeBinsAndCopiesPerInterval() {
        // 10 bins over [0, 1 s]; header start 0 < first record.
        var header = TraceHeader(kernelRelease: "6.18", hostname: "h", attachTiers: [:], pageSize: 4096,
                                 realtimeOffsetNanoseconds: 0, startTime: 1, ramBytes: 0, swapBytes: 0,
                                 overcommitMemory: 0, overcommitRatio: 50, overcommitKBytes: 0,
                                 transparentHugePages: "never", selection: "", toolVersion: "t")
        header.startTime = 1
        var records: [TraceRecord] = [proc(1, pid: 9, ppid: 1, comm: "x")]
        // 5 copies at 50..54 ms (one interval), 3 copies at 450..452 ms (another), 1 reuse at 700 ms.
        var t: UInt64 = 50_000_000
        for _ in 0..<5 { records += [wp(t, pid: 9), res(t + 1, pid: 9, .copy)]; t += 1_000_000 }
        t = 450_000_000
        for _ in 0..<3 { records += [wp(t, pid: 9), res(t + 1, pid: 9, .fileCopy)]; t += 1_000_000 }
        records.append(wp(700_000_000, pid: 9))
        records.append(.end(EndRecord(time: 1_000_000_001, reason: "duration")))
        let totals = RecordedTotals(records: records, header: header, bins: 10)
        XCTAssertEqual(totals.startTime, 1)
        XCTAssertEqual(totals.endTime, 1_000_000_001)
        let p = totals.processes[9]!
        XCTAssertEqual(p.copiesOverTime, [5, 0, 0, 0, 3, 0, 0, 0, 0, 0])
        XCTAssertEqual(p.copiesPerInterval[2], 1)      // 5 copies: [4, 8)
        XCTAssertEqual(p.copiesPerInterval[1], 1)      // 3 copies: [2, 4)
        XCTAssertEqual(p.copiesPerInterval.reduce(0, +), 2)
        XCTAssertEqual(totals.total.copiesOverTime, p.copiesOverTime)
    }

    func testCopiesPerIntervalFollowsTheKernelsIntervals() {
        let ms: UInt64 = 1_000_000
        // Interval opens at 0: 0, 50, 99 ms → 3; 100 ms opens a new one: 100, 150 → 2; 400 → 1.
        let buckets = RecordedTotals.copiesPerInterval([0, 50 * ms, 99 * ms, 100 * ms, 150 * ms, 400 * ms], interval: 100 * ms)
        var expected = [UInt64](repeating: 0, count: 64)
        expected[0] = 1   // 1
        expected[1] = 2   // 2 and 3
        XCTAssertEqual(buckets, expected)
        XCTAssertEqual(RecordedTotals.copiesPerInterval([], interval: 100 * ms), [UInt64](repeating: 0, count: 64))
    }

    func testClassifiedFaultsAreReportedOnce() {
        var seen: [ClassifiedFault] = []
        RecordedTotals.forEachClassifiedFault(RecordedTotals.sortedByTime([
            wp(10, pid: 1, tid: 1), wp(11, pid: 1, tid: 2), res(12, pid: 1, tid: 2, .copy),
            wp(13, pid: 1, tid: 1),
        ])) { seen.append($0) }
        XCTAssertEqual(seen.map(\.time), [10, 11, 13])
        XCTAssertEqual(seen.map(\.faultClass), [.reuse, .copy, .reuse])
        XCTAssertEqual(seen.map(\.inferred), [true, false, true])
    }
}
