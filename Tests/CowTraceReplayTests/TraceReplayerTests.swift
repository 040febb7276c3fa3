@testable import CowTraceReplay
import CowTraceFormat
import MMUSim
import XCTest

final class TraceReplayerTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000

    /// A parent maps 64 pages, writes them (first touches), forks; the child writes 16.
    func forkedParent(_ b: inout TraceBuilder) {
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 64)
        b.touch(1000, at: A, pages: 64, write: true)
        b.fork(1000, 1001, comm: "child")
        b.wp(1001, at: A, pages: 16, .copy)
    }

    func testChildWritesSixteenPagesSixteenCopies() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.end()
        let result = try b.replay()
        let child = try XCTUnwrap(result.process(1001))
        XCTAssertEqual(child.origin, .forked)
        XCTAssertEqual(child.parent, 1000)
        XCTAssertEqual(child.kernel, ClassCounts(copy: 16))
        XCTAssertEqual(child.model, ClassCounts(copy: 16))
        XCTAssertEqual(child.agreements, 16)
        XCTAssertEqual(child.modelBytesCopied, 16 * 4096)
        XCTAssertEqual(result.process(1000)?.firstTouchFaults, 64)
        XCTAssertEqual(result.process(1000)?.writeProtectFaults, 0)
        XCTAssertEqual(result.stats.writeProtectFaults, 16)
        XCTAssertEqual(result.stats.firstTouchFaults, 64)
        XCTAssertEqual(result.stats.resolves, 16)
        XCTAssertEqual(result.stats.implicitMappings, 0)
        XCTAssertEqual(result.stats.materializedPages, 0)
        XCTAssertTrue(result.disagreements.isEmpty)

        let check = TraceCheck(result: result)
        XCTAssertEqual(check.agreed, 16)
        XCTAssertEqual(check.total, 16)
        XCTAssertEqual(check.ratio, 1)
        XCTAssertTrue(check.mismatches.isEmpty)
        XCTAssertTrue(check.passed)
        XCTAssertEqual(agreementLine(check),
                       "agreement 100.00 % (16 of 16 write-protect faults) — threshold 99.5 %: PASS")

        let table = renderReplay(result)
        XCTAssertTrue(table.contains("pid  comm    copies  reuses  zero-fills  file-copies  shared-writes  MiB copied"), table)
        XCTAssertTrue(table.contains("1001  child       16       0           0            0              0        0.06"), table)
        XCTAssertTrue(table.contains("total              16       0"), table)
    }

    func testParentWritesAllWhileChildLivesCopiesWhatTheChildDidNotCopy() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.wp(1000, at: A, pages: 16, .reuse)            // the child copied these: the parent is alone
        b.wp(1000, at: A + 16 * page, pages: 48, .copy) // still shared with the child
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 48, reuse: 16))
        XCTAssertEqual(result.process(1000)?.kernel, ClassCounts(copy: 48, reuse: 16))
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 16))
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total], [80, 80])
        XCTAssertTrue(check.passed)
        XCTAssertEqual(result.modelTotals, ClassCounts(copy: 64, reuse: 16))
    }

    func testParentWritesAfterChildExitReusesEverything() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.exit(1001)
        b.wp(1000, at: A, pages: 64, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 64))
        XCTAssertTrue(result.process(1001)?.exited ?? false)
        XCTAssertEqual(TraceCheck(result: result).agreed, 80)
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testZeroPageReadThenWriteIsAZeroFill() throws {
        var b = TraceBuilder()
        b.mmap(1000, at: A, pages: 4)
        b.touch(1000, at: A, write: false)
        b.wp(1000, at: A, .zeroFill)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(zeroFill: 1))
        XCTAssertEqual(result.process(1000)?.kernel, ClassCounts(zeroFill: 1))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testPrivateFileMappingFileCopyFromTheLastResolve() throws {
        var b = TraceBuilder()
        b.mmap(1000, at: A, pages: 4, flags: MAP_PRIVATE, fd: 3)
        b.touch(1000, at: A, write: false)
        b.wp(1000, at: A, .fileCopy)                  // resolves: copy, then file-copy
        b.touch(1000, at: A + page, write: true)      // do_cow_fault: not a write-protect fault
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.stats.resolves, 2)
        XCTAssertEqual(result.process(1000)?.kernel, ClassCounts(fileCopy: 1))
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(fileCopy: 1))
        let check = TraceCheck(result: result)
        XCTAssertTrue(check.mismatches.isEmpty)
        XCTAssertTrue(check.passed)
    }

    func testSharedWriteIsAReuseOnTheTracepointTier() throws {
        var b = TraceBuilder(tier: "tracepoint")
        b.mmap(1000, at: A, pages: 2, flags: MAP_SHARED, fd: 4)
        b.touch(1000, at: A, write: false)
        b.wp(1000, at: A, .sharedWrite) // recorded with no resolve: a reuse
        b.end()
        let result = try b.replay()
        XCTAssertFalse(result.tierSeesSharedWrites)
        let p = try XCTUnwrap(result.process(1000))
        XCTAssertEqual(p.kernel, ClassCounts(reuse: 1))
        XCTAssertEqual(p.model, ClassCounts(sharedWrite: 1))
        XCTAssertEqual(p.tierLimitedAgreements, 1)
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total, check.tierLimited], [1, 1, 1])
        XCTAssertTrue(check.groups.isEmpty)
        XCTAssertTrue(check.mismatches.isEmpty, "the counters also say reuse")
        XCTAssertTrue(check.passed)
        XCTAssertTrue(renderCheck(check).contains("1 fault the model classes shared-write (or SIGSEGV) and the tracepoint tier records as reuse: counted as agreements"),
                      renderCheck(check))
    }

    func testSharedWriteOnTheFentryTier() throws {
        var b = TraceBuilder(tier: "fentry")
        b.mmap(1000, at: A, pages: 2, flags: MAP_SHARED, fd: 4)
        b.touch(1000, at: A, pages: 2, write: false)
        b.wp(1000, at: A, .sharedWrite)
        b.wp(1000, at: A + page, .reuse) // fentry would have said shared-write: a real disagreement
        b.end()
        let result = try b.replay()
        XCTAssertTrue(result.tierSeesSharedWrites)
        let p = try XCTUnwrap(result.process(1000))
        XCTAssertEqual(p.kernel, ClassCounts(reuse: 1, sharedWrite: 1))
        XCTAssertEqual(p.model, ClassCounts(sharedWrite: 2))
        XCTAssertEqual(p.tierLimitedAgreements, 0)
        XCTAssertEqual(result.disagreements.map(\.address), [A + page])
        XCTAssertEqual(result.disagreements.first?.reason, .unexplained)
    }

    func testWritebackWriteProtectsSharedPagesAgain() throws {
        var b = TraceBuilder(tier: "fentry")
        b.mmap(1000, at: A, pages: 1, flags: MAP_SHARED, fd: 5)
        b.touch(1000, at: A, write: true)  // do_shared_fault: mapped writable
        b.wp(1000, at: A, .sharedWrite)    // writeback cleaned it: the next write faults again
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.stats.reprotectedPages, 1)
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(sharedWrite: 1))
        XCTAssertTrue(result.disagreements.isEmpty)
    }

    func testDontneedDropsTheParentsReferences() throws {
        var b = TraceBuilder()
        b.mmap(1000, at: A, pages: 4)
        b.touch(1000, at: A, pages: 4, write: true)
        b.fork(1000, 1001)
        b.madvise(1000, at: A, pages: 4, 4)  // MADV_DONTNEED
        b.wp(1001, at: A, pages: 4, .reuse)   // the child is the only mapper left
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(reuse: 4))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testWriteToReadOnlyMemoryIsAReuseOnTheTracepointTier() throws {
        var b = TraceBuilder()
        b.mmap(1000, at: A, pages: 2)
        b.touch(1000, at: A, write: true)
        b.syscall(1000, .mprotect, [A, 2 * page, PROT_R], 0)
        b.wp(1000, at: A, .reuse)            // SIGSEGV in the kernel, a reuse to the tracepoint tier
        b.syscall(1000, .mprotect, [A, 2 * page, PROT_RW], 0)
        b.fork(1000, 1001)
        b.wp(1000, at: A, .copy)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 1, other: 1))
        XCTAssertEqual(result.process(1000)?.tierLimitedAgreements, 1)
        XCTAssertTrue(result.disagreements.isEmpty)
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total, check.tierLimited], [2, 2, 1])
    }

    func testTHPUnderMadvise() throws {
        var b = TraceBuilder(thp: "madvise")
        let H: UInt64 = 0x7f00_0000_0000          // 2 MiB aligned
        b.mmap(1000, at: H, pages: 1024)          // 4 MiB
        b.madvise(1000, at: H, pages: 1024, MADV_HUGEPAGE)
        b.touch(1000, at: H, write: true)         // one fault maps 2 MiB
        let N: UInt64 = 0x7f00_0080_0000          // 4 MiB not advised: no THP
        b.mmap(1000, at: N, pages: 1024)
        b.touch(1000, at: N, write: true)
        b.fork(1000, 1001)
        b.wp(1001, at: H + 3 * page, .copy)       // the child's PMD is split, then 4 KiB is copied
        b.wp(1000, at: H + 3 * page, .reuse)      // the parent's PMD is split; that page is its own now
        b.wp(1000, at: H + 5 * page, .copy)       // still shared with the child
        b.end()
        let (replayer, result) = try b.replayer()
        XCTAssertEqual(replayer.machine.vmstat.thpFaultAlloc, 1)
        XCTAssertEqual(replayer.machine.vmstat.thpSplitPMD, 2)
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 1, reuse: 1))
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 1))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testForkThenExecFromTheSpawner() throws {
        var b = TraceBuilder()
        // `record -c`: cowtrace (999, unknown to the model) forks the command, which execs.
        b.fork(999, 1000, comm: "cowtrace")
        b.exec(1000, comm: "workload")
        let heap: UInt64 = 0x5555_6000_0000
        b.brk(1000, 0, result: heap)
        b.brk(1000, heap + 8 * page, result: heap + 8 * page)
        b.touch(1000, at: heap, pages: 8, write: true)
        b.fork(1000, 1001)
        b.exec(1001, comm: "ls")
        b.wp(1000, at: heap, pages: 8, .reuse)   // the child dropped its references at exec
        b.end()
        let (replayer, result) = try b.replayer()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 8))
        XCTAssertEqual(result.process(1001)?.comm, "ls")
        XCTAssertEqual(result.process(1001)?.execs, 1)
        XCTAssertEqual(result.process(999)?.origin, .adopted)
        XCTAssertEqual(result.stats.adoptedProcesses, 1)
        let heapVMA = try XCTUnwrap(replayer.machine.vma(1000, containing: heap))
        XCTAssertTrue(heapVMA.flags.contains(.brkHeap))
        XCTAssertEqual(heapVMA.end, heap + 8 * page)
        XCTAssertEqual(result.stats.implicitMappings, 0)
        XCTAssertTrue(TraceCheck(result: result).passed)
        XCTAssertFalse(renderReplay(result).contains(" 999 "), "the spawner has no fault: not shown")
    }

    /// The snapshot read at exec is read while the program runs: it can show a
    /// private file page already copied by a write-protect fault recorded after
    /// the exec. Before the process forks, the fault finds the page-cache page.
    func testAnExecSnapshotReadAfterAFileCopyIsPutBack() throws {
        var b = TraceBuilder()
        let D: UInt64 = 0x5600_0000_0000
        b.comms[3000] = "sh"
        b.exec(3000, comm: "sh")
        let t = b.now // the exec's time: the snapshot is stamped with it
        b.records.append(.process(ProcessRecord(time: t, pid: 3000, ppid: 1, uid: 0, comm: "sh",
                                                startBrk: D + 64 * page, brk: D + 64 * page, startStack: 0x7ffe_0000_0000)))
        b.records.append(.mapping(MappingRecord(pid: 3000, start: D, end: D + 4 * page, permissions: "rw-p",
                                                offset: 0, inode: 99, path: "/usr/bin/sh")))
        // Page 0: the anon copy the fault below made (read after it); page 1: the page-cache page.
        b.records.append(.pageRun(PageRunRecord(pid: 3000, address: D, count: 1, flags: [.present], frame: 0x50000)))
        b.records.append(.pageRun(PageRunRecord(pid: 3000, address: D + page, count: 1, flags: [.present, .fileOrShared],
                                                frame: 0x60000)))
        b.wp(3000, at: D, .fileCopy)
        b.wp(3000, at: D + page, .fileCopy)
        b.fork(3000, 3001)
        b.wp(3001, at: D, .copy) // shared with the parent since the fork: a real anon copy
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.process(3000)?.model, ClassCounts(fileCopy: 2))
        XCTAssertEqual(result.process(3001)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.stats.snapshotPagesRefaulted, 1)
    }

    /// A page the kernel populated itself before the fork (read() into a buffer):
    /// the child's write-protect fault on it copies, the parent's later one reuses.
    func testAPagePopulatedBeforeTheForkOutsideTheTraceIsShared() throws {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 4)
        b.fork(1000, 1001, comm: "child")
        b.wp(1001, at: A, .copy)
        b.wp(1000, at: A, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 1))
        XCTAssertEqual(result.stats.materializedPages, 2, "one page, in the parent and the child")
    }

    /// Two processes already running: maps and pagemap, pages shared by frame number.
    func testProcessesFoundAtStartShareFramesByNumber() throws {
        var b = TraceBuilder()
        let H: UInt64 = 0x5600_0000_0000, D: UInt64 = 0x7f50_0000_0000
        let L: UInt64 = 0x7f60_0000_0000, V: UInt64 = 0x7ffd_0000_0000, S: UInt64 = 0x7ffe_0000_0000
        let t = b.tick()
        b.records.append(.process(ProcessRecord(time: t, pid: 2000, ppid: 1, uid: 0, comm: "redis",
                                                startBrk: H, brk: H + 4 * page, startStack: S + 7 * page)))
        func map(_ pid: Int32, _ s: UInt64, _ pages: UInt64, _ perms: String, _ path: String = "", offset: UInt64 = 0, inode: UInt64 = 0) {
            b.records.append(.mapping(MappingRecord(pid: pid, start: s, end: s + pages * page, permissions: perms,
                                                    offset: offset, inode: inode, path: path)))
        }
        func run(_ pid: Int32, _ a: UInt64, _ count: UInt32, _ flags: PageRunFlags, _ frame: UInt64 = 0) {
            b.records.append(.pageRun(PageRunRecord(pid: pid, address: a, count: count, flags: flags, frame: frame)))
        }
        map(2000, H, 4, "rw-p", "[heap]")
        map(2000, D, 32, "rw-p")
        map(2000, L, 4, "r--p", "/usr/lib/libc.so.6", inode: 77)
        map(2000, L + 4 * page, 4, "rw-p", "/usr/lib/libc.so.6", offset: 4 * page, inode: 77)
        map(2000, V, 2, "r-xp", "[vdso]")
        map(2000, S, 8, "rw-p", "[stack]")
        run(2000, D, 16, [.present], 0x10000)                 // shared with 2001
        run(2000, D + 16 * page, 4, [.present, .exclusive], 0x20000)
        run(2000, D + 20 * page, 2, [.present, .zeroPage])
        run(2000, D + 22 * page, 1, [.present], 0x30000)      // shared with a process outside the trace
        run(2000, L + 4 * page, 2, [.present, .fileOrShared], 0x40000)
        run(2000, S + 6 * page, 2, [.swapped])
        let t2 = b.tick()
        b.records.append(.process(ProcessRecord(time: t2, pid: 2001, ppid: 2000, uid: 0, comm: "redis-rdb",
                                                startBrk: H, brk: H + 4 * page, startStack: S + 7 * page)))
        map(2001, D, 32, "rw-p")
        map(2001, L + 4 * page, 4, "rw-p", "/usr/lib/libc.so.6", offset: 4 * page, inode: 77)
        run(2001, D, 16, [.present], 0x10000)
        run(2001, L + 4 * page, 2, [.present, .fileOrShared], 0x40000)
        b.comms[2000] = "redis"; b.comms[2001] = "redis-rdb"

        b.wp(2001, at: D, .copy)
        b.wp(2000, at: D, .reuse)                  // the child copied it
        b.wp(2000, at: D + page, .copy)            // still shared
        b.wp(2000, at: D + 16 * page, .reuse)      // exclusive
        b.wp(2000, at: D + 20 * page, .zeroFill)   // the zero page
        b.wp(2000, at: D + 22 * page, .copy)       // mapped outside the trace too
        b.wp(2000, at: L + 4 * page, .fileCopy)    // page-cache page of a private file mapping
        b.wp(2001, at: L + 4 * page, .fileCopy)
        b.brk(2000, H + 8 * page, result: H + 8 * page)
        b.touch(2000, at: H + 6 * page, write: true)
        b.end()

        let (replayer, result) = try b.replayer()
        let m = replayer.machine
        XCTAssertEqual(result.stats.installedPages, 16 + 4 + 2 + 1 + 2 + 16 + 2)
        XCTAssertEqual(result.stats.swappedPages, 2)
        XCTAssertEqual(result.process(2000)?.origin, .foundRunning)
        XCTAssertEqual(result.process(2001)?.parent, 2000)
        XCTAssertEqual(m.frameInfo(2000, D + 2 * page)?.frame, m.frameInfo(2001, D + 2 * page)?.frame)
        XCTAssertEqual(m.frameInfo(2000, D + 2 * page)?.refcount, 2)
        XCTAssertEqual(m.frameInfo(2000, L + 5 * page)?.frame, m.frameInfo(2001, L + 5 * page)?.frame,
                       "the same page-cache page through the same file")
        XCTAssertEqual(result.process(2000)?.model, ClassCounts(copy: 2, reuse: 2, zeroFill: 1, fileCopy: 1))
        XCTAssertEqual(result.process(2001)?.model, ClassCounts(copy: 1, fileCopy: 1))
        XCTAssertTrue(result.disagreements.isEmpty, "\(result.disagreements)")
        // [vdso] is not modelled; the heap grew with brk.
        XCTAssertNil(m.vma(2000, containing: V))
        let heap = try XCTUnwrap(m.vma(2000, containing: H + 6 * page))
        XCTAssertTrue(heap.flags.contains(.brkHeap))
        XCTAssertEqual([heap.start, heap.end], [H, H + 8 * page])
        XCTAssertEqual(result.stats.implicitMappings, 0)
        XCTAssertEqual(result.stats.materializedPages, 0)
        XCTAssertEqual(result.stats.modelErrors, 0, "\(result.notes)")
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total], [8, 8])
        XCTAssertTrue(check.passed)
    }

    /// PageRun records go to the model whole (`StreamRecord(pageRun:)`), but
    /// for a frame number beyond pagemap's 55 bits, which goes as an other
    /// record: both ways replay a snapshot alike, in the file's order, held
    /// behind an open fault (the second process is found while the first's
    /// fault is open), and out of time order (its snapshot written after its
    /// first fault: taken aside by the prepass, put back by the merger).
    func testPageRunsReplayAlikeWholeOrAsOtherRecords() throws {
        let D: UInt64 = 0x7f50_0000_0000, S: UInt64 = 0x7ffe_0000_0000
        func snapshot(frameBase: UInt64, late: Bool) throws -> ReplayResult {
            var b = TraceBuilder()
            func found(_ pid: Int32, _ comm: String) -> [TraceRecord] {
                b.comms[pid] = comm
                return [
                    .process(ProcessRecord(time: b.tick(), pid: pid, ppid: pid == 2000 ? 1 : 2000, uid: 0, comm: comm,
                                           startBrk: 0x5600_0000_0000, brk: 0x5600_0000_0000, startStack: S + 7 * page)),
                    .mapping(MappingRecord(pid: pid, start: D, end: D + 64 * page, permissions: "rw-p",
                                           offset: 0, inode: 0, path: "")),
                    .pageRun(PageRunRecord(pid: pid, address: D, count: 16, flags: [.present], frame: frameBase + 0x10000)),
                ]
            }
            let parent = found(2000, "redis")
            b.records += parent
            b.records.append(.pageRun(PageRunRecord(pid: 2000, address: D + 16 * page, count: 8,
                                                    flags: [.present, .exclusive], frame: frameBase + 0x20000)))
            b.records.append(.pageRun(PageRunRecord(pid: 2000, address: D + 24 * page, count: 2,
                                                    flags: [.present, .zeroPage], frame: 0)))
            b.wp(2000, at: D + 16 * page, .reuse)   // open until 2000 faults again: what follows is held
            let child = found(2001, "redis-rdb")
            if !late { b.records += child }
            b.wp(2001, at: D, .copy)
            if late { b.records += child }          // after the fault that follows it in time
            b.wp(2000, at: D, .reuse)
            b.wp(2000, at: D + page, .copy)
            b.wp(2000, at: D + 24 * page, .zeroFill)
            b.end()
            if late {
                var prepass = ReplayPrepass()
                for r in b.records { prepass.feed(r) }
                XCTAssertFalse(prepass.inOrder, "the second snapshot comes after a later fault")
            }
            return try b.replay()
        }
        XCTAssertNotNil(StreamRecord(pageRun: PageRunRecord(pid: 1, address: 0, count: 1, flags: [], frame: 0x20000)))
        XCTAssertNil(StreamRecord(pageRun: PageRunRecord(pid: 1, address: 0, count: 1, flags: [], frame: 1 << 56)))
        var json: [String] = []
        for frameBase: UInt64 in [0, 1 << 56] {
            for late in [false, true] {
                let result = try snapshot(frameBase: frameBase, late: late)
                let what = "frames from \(frameBase), late: \(late)"
                XCTAssertEqual(result.stats.installedPages, 16 + 16 + 8 + 2, what)
                XCTAssertEqual(result.process(2000)?.model, ClassCounts(copy: 1, reuse: 2, zeroFill: 1), what)
                XCTAssertEqual(result.process(2001)?.model, ClassCounts(copy: 1), what)
                XCTAssertTrue(result.disagreements.isEmpty, "\(what): \(result.disagreements)")
                XCTAssertEqual(result.stats.modelErrors, 0, "\(what): \(result.notes)")
                json.append(renderCheckJSON(TraceCheck(result: result)))
            }
        }
        XCTAssertEqual(Set(json).count, 1, "the same comparison every way")
    }

    /// The feed hands a pageRun record on whole, with no number in the store of other records.
    func testTheFeedCarriesPageRunsWhole() {
        let worker = ModelWorker { _, _ in }
        defer { worker.finish() }
        let feed = ReplayFeed(ReplayPrepass(), worker)
        let run = PageRunRecord(pid: 1, address: 0x1000, count: 4, flags: [.present, .exclusive], frame: 0x42)
        XCTAssertEqual(feed.stream(.pageRun(run)).kind, .pageRun)
        XCTAssertEqual(feed.stream(.pageRun(run)).pageRun, run)
        var beyond = run
        beyond.frame = 1 << 56
        let other = feed.stream(.pageRun(beyond))
        XCTAssertEqual(other.kind, .other)
        XCTAssertEqual(other.otherNumber, 0, "the first record in the store")
        XCTAssertEqual(feed.stream(.exit(ExitEventRecord(time: 1, pid: 1, tid: 1, exitCode: 0))).otherNumber, 1)
    }

    func testUnsortedRecordsAreSortedByTime() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.end()
        var shuffled = b.records
        shuffled.reverse()
        shuffled.swapAt(0, shuffled.count / 2)
        let result = try TraceReplayer(header: b.header).replay(shuffled)
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 16))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testMremapMovesThePages() throws {
        var b = TraceBuilder()
        let N: UInt64 = 0x7f20_0000_0000
        b.mmap(1000, at: A, pages: 8)
        b.touch(1000, at: A, pages: 8, write: true)
        b.syscall(1000, .mremap, [A, 8 * page, 16 * page, MREMAP_MAYMOVE | MREMAP_FIXED, N], Int64(N))
        b.fork(1000, 1001)
        b.wp(1001, at: N + page, .copy)
        b.wp(1000, at: N + 2 * page, .copy)
        b.end()
        let (replayer, result) = try b.replayer()
        XCTAssertNil(replayer.machine.vma(1000, containing: A))
        XCTAssertEqual(replayer.machine.vma(1000, containing: N)?.end, N + 16 * page)
        XCTAssertEqual(result.stats.materializedPages, 0)
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 1))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testMapPopulateAndFailedSyscalls() throws {
        var b = TraceBuilder()
        b.mmap(1000, at: A, pages: 4, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
        b.syscall(1000, .munmap, [A, 4 * page], -22) // EINVAL: nothing changed
        b.fork(1000, 1001)
        b.wp(1001, at: A, pages: 4, .copy)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.stats.failedSyscalls, 1)
        XCTAssertEqual(result.stats.materializedPages, 0)
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 4))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    func testUnknownPidAndUnmappedAddresses() throws {
        var b = TraceBuilder()
        let X: UInt64 = 0x5555_5555_0000, Y: UInt64 = 0x7ffc_1000_0000
        // A process the model never saw created: adopted; its memory is made up.
        b.touch(4242, at: X, write: false)
        b.wp(4242, at: X, .zeroFill)
        // A known process writes where the model has no mapping (its stack, from exec).
        b.mmap(1000, at: A, pages: 2)
        b.wp(1000, at: Y, .copy)
        // A mapped page the model never saw populated.
        b.wp(1000, at: A, .zeroFill)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(4242)?.origin, .adopted)
        XCTAssertEqual(result.stats.adoptedProcesses, 2) // 4242 and 1000 (first seen at its mmap)
        XCTAssertEqual(result.stats.implicitMappings, 2)
        XCTAssertEqual(result.stats.materializedPages, 2)
        XCTAssertEqual(result.process(4242)?.model, ClassCounts(zeroFill: 1))
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 2))
        XCTAssertEqual(result.disagreements.map(\.reason), [.mappingBeforeTrace, .pagePopulatedOutside])
        XCTAssertEqual(result.disagreements.map(\.address), [Y, A])
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total], [1, 3])
        XCTAssertFalse(check.passed)
    }

    func testHeaderErrors() throws {
        var b = TraceBuilder()
        b.pageSize = 16384
        XCTAssertThrowsError(try TraceReplayer(header: b.header)) {
            XCTAssertEqual($0 as? ReplayError, .unsupportedPageSize(16384))
        }
        b.pageSize = 4096
        b.thp = "sometimes"
        XCTAssertThrowsError(try TraceReplayer(header: b.header)) {
            XCTAssertEqual($0 as? ReplayError, .unsupportedTHPMode("sometimes"))
        }
        b.thp = "always [madvise] never"
        XCTAssertEqual(try TraceReplayer(header: b.header).machine.configuration.transparentHugePages, .madvise)
        b.thp = "never"
        b.overcommit = 7
        XCTAssertThrowsError(try TraceReplayer(header: b.header)) {
            XCTAssertEqual($0 as? ReplayError, .unsupportedOvercommitMode(7))
        }
        b.overcommit = 2
        let config = try TraceReplayer.configuration(for: b.header)
        XCTAssertEqual(config.overcommitMode, .never)
        XCTAssertEqual(config.transparentHugePages, .never)
        XCTAssertEqual(config.ramBytes, 8 << 30)
    }
}
