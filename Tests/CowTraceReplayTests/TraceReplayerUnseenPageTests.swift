@testable import CowTraceReplay
import CowTraceFormat
import MMUSim
import XCTest

/// Write-protect faults on pages the recording never showed populated (the
/// kernel wrote them itself, or the exec snapshot was read late or cut short
/// by the process's exit): what the recording shows decides how the replay
/// makes them up, and a page made up without such evidence stays unexplained.
final class TraceReplayerUnseenPageTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000
    /// A private writable file mapping (an ELF data segment), through an fd.
    let D: UInt64 = 0x5600_0000_0000

    /// The parent writes a page the model never saw after forking a child that
    /// is still alive: only the fork can have write-protected it, so the child
    /// maps it too and the parent copies; the child then finds it its own.
    func testParentWriteOnAnUnseenPageWithALiveChildCopies() throws {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 4)
        b.fork(1000, 1001, comm: "child")
        b.wp(1000, at: A, .copy)
        b.wp(1001, at: A, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(reuse: 1))
        XCTAssertEqual(result.stats.materializedPages, 2, "one page, in the parent and the child")
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    /// The same write after the child exited: nobody else maps the page, so it is reused.
    func testParentWriteOnAnUnseenPageAfterTheChildExitedReuses() throws {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 4)
        b.fork(1000, 1001, comm: "child")
        b.exit(1001)
        b.wp(1000, at: A, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 1))
        XCTAssertEqual(result.stats.materializedPages, 1)
    }

    /// Every live process forked since the page existed maps it: the parent of
    /// two live children copies, and so does the first child; the last one reuses.
    func testAnUnseenPageIsSharedWithEveryLiveDescendant() throws {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 1)
        b.fork(1000, 1001)
        b.fork(1001, 1002)
        b.wp(1001, at: A, .copy)
        b.wp(1000, at: A, .copy)
        b.wp(1002, at: A, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.stats.materializedPages, 3)
    }

    /// Without a fork nothing shows the page was shared: it is made up as the
    /// process's own, and the kernel's copy stays an unexplained disagreement.
    func testAnUnseenPageWithNoForkStaysUnexplained() throws {
        var b = TraceBuilder()
        b.comms[1000] = "solo"
        b.mmap(1000, at: A, pages: 4)
        b.wp(1000, at: A, .copy)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 1))
        XCTAssertEqual(result.disagreements.map(\.reason), [.pagePopulatedOutside])
        XCTAssertEqual(result.stats.materializedPages, 1)
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.evidenced, check.unexplained], [0, 0, 1])
        XCTAssertFalse(check.passed)
    }

    /// A child that exec'd since its fork has a new address space: it shares
    /// nothing with its parent, whose write on an unseen page is its own.
    func testAChildThatExecdSharesNothing() throws {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 4)
        b.fork(1000, 1001)
        b.exec(1001, comm: "ls")
        b.wp(1000, at: A, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.stats.materializedPages, 1)
    }

    /// A private file page the kernel copied as anonymous memory (a copy, not a
    /// file copy) was anonymous already: exec cleared the .bss tail in it. The
    /// child copies it from the page it shares with its parent, and the parent
    /// reuses it once the child is gone. A file copy still finds the page cache.
    func testAnUnseenPrivateFilePageTheKernelCopiedAsAnonymousWasAnonymous() throws {
        var b = TraceBuilder()
        b.comms[1000] = "prog"
        b.mmap(1000, at: D, pages: 2, flags: MAP_PRIVATE, fd: 3)
        b.fork(1000, 1001)
        b.wp(1001, at: D + page, .copy)
        b.exit(1001)
        b.wp(1000, at: D + page, .reuse)
        b.wp(1000, at: D, .fileCopy)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(reuse: 1, fileCopy: 1))
        XCTAssertEqual(result.stats.materializedPages, 3)
    }

    /// An exec snapshot read after the process forked shows its anonymous
    /// pages shared (not exclusive). A fresh address space shares them only
    /// with its own children: at the exec's time the page was the process's
    /// own, and the recorded fork shares it. The parent reuses it once the child
    /// that copied it has gone.
    func testAnExecSnapshotReadAfterAForkShowsNoOutsideSharer() throws {
        var b = TraceBuilder()
        b.comms[3000] = "prog"
        b.exec(3000, comm: "prog")
        let t = b.now
        b.records.append(.process(ProcessRecord(time: t, pid: 3000, ppid: 1, uid: 0, comm: "prog",
                                                startBrk: D + 64 * page, brk: D + 64 * page, startStack: 0x7ffe_0000_0000)))
        b.records.append(.mapping(MappingRecord(pid: 3000, start: D, end: D + 2 * page, permissions: "rw-p",
                                                offset: 0, inode: 99, path: "/usr/bin/prog")))
        b.records.append(.pageRun(PageRunRecord(pid: 3000, address: D, count: 1, flags: [.present], frame: 0x50000)))
        b.fork(3000, 3001)
        b.wp(3001, at: D, .copy)
        b.exit(3001)
        b.wp(3000, at: D, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.stats.snapshotPagesShared, 1)
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    /// A process found running (not exec'd in the trace) may share a page
    /// with a process outside the trace: the parent's write still copies.
    func testAProcessFoundRunningKeepsItsOutsideSharer() throws {
        var b = TraceBuilder()
        b.comms[3000] = "prog"
        b.records.append(.process(ProcessRecord(time: b.tick(), pid: 3000, ppid: 1, uid: 0, comm: "prog",
                                                startBrk: D + 64 * page, brk: D + 64 * page, startStack: 0x7ffe_0000_0000)))
        b.records.append(.mapping(MappingRecord(pid: 3000, start: D, end: D + 2 * page, permissions: "rw-p",
                                                offset: 0, inode: 99, path: "/usr/bin/prog")))
        b.records.append(.pageRun(PageRunRecord(pid: 3000, address: D, count: 1, flags: [.present], frame: 0x50000)))
        b.wp(3000, at: D, .copy)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.stats.snapshotPagesShared, 0)
    }

    /// No snapshot at all (the process exited before its maps were read): the
    /// stack is a mapping the model has to make up. Made by exec, before the
    /// fork, so the child has it too: the parent's write copies the page the
    /// live child shares, and the child then reuses it.
    func testAMadeUpMappingIsInheritedByTheLiveChild() throws {
        var b = TraceBuilder()
        let stack: UInt64 = 0x7ffd_0000_0000
        b.comms[1000] = "prog"
        b.exec(1000, comm: "prog")
        b.fork(1000, 1001)
        b.wp(1000, at: stack, .copy)
        b.wp(1001, at: stack, .reuse)
        b.end()
        let (replayer, result) = try b.replayer()
        XCTAssertEqual(result.process(1000)?.model, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1001)?.model, ClassCounts(reuse: 1))
        XCTAssertEqual(result.stats.implicitMappings, 2, "one page, in the parent and the child")
        XCTAssertNotNil(replayer.machine.vma(1001, containing: stack))
        XCTAssertTrue(TraceCheck(result: result).passed)
    }

    /// The child's write on a private file page of a made-up mapping (ld.so's
    /// data): the parent has the mapping, and the page, too.
    func testAMadeUpFileMappingOfAChildIsItsParentsToo() throws {
        var b = TraceBuilder()
        b.comms[1000] = "prog"
        b.exec(1000, comm: "prog")
        b.fork(1000, 1001)
        b.wp(1001, at: D, .copy, mapping: .filePrivate)
        b.exit(1001)
        b.wp(1000, at: D, .reuse, mapping: .filePrivate)
        b.end()
        let (replayer, result) = try b.replayer()
        XCTAssertEqual(result.disagreements, [])
        XCTAssertEqual(result.stats.implicitMappings, 2)
        XCTAssertNotNil(replayer.machine.vma(1000, containing: D)?.file, "a made-up file in the parent too")
    }
}
