@testable import MMUSim
import XCTest

/// Hand-computed from mm/util.c for a 1 GiB machine without swap:
/// RAM = 262144 pages; CommitLimit (ratio 50) = 131072; admin reserve = min(1 GiB/32, 8 MiB) = 2048 pages;
/// user reserve = min(1 GiB/32, 128 MiB) = 8192 pages, of which min(total_vm/32, 8192) is held back.
final class MachineOvercommitTests: XCTestCase {
    func never(_ configure: (inout MachineConfiguration) -> Void = { _ in }) -> Machine {
        var c = MachineConfiguration(ramBytes: 1 * GiB, overcommitMode: .never)
        configure(&c)
        return Machine(c)
    }

    func testCommitLimitAndReserves() {
        let m = never()
        XCTAssertEqual(m.commitLimitPages, 131_072)
        XCTAssertEqual(m.adminReservePages, 2048)
        XCTAssertEqual(m.userReservePages, 8192)
        XCTAssertEqual(never { $0.overcommitRatio = 100 }.commitLimitPages, 262_144)
        XCTAssertEqual(never { $0.overcommitKBytes = 524_288; $0.swapBytes = 1 * GiB }.commitLimitPages, 131_072 + 262_144)
    }

    func testModeNeverRefusesAtTheLimitLessReserves() throws {
        let m = never()
        let p = try m.spawn(comm: "p")
        // allowed = 131072 - 2048 - min(0/32, 8192) = 129024; Committed_AS must stay strictly below.
        XCTAssertThrowsError(try m.mmap(p, length: 129_024 * page, protection: .readWrite, flags: [.private, .anonymous]))
        XCTAssertEqual(m.committedPages, 0, "a refused charge is taken back")
        try m.mmap(p, length: 129_023 * page, protection: .readWrite, flags: [.private, .anonymous])
        XCTAssertEqual(m.committedPages, 129_023)
        // Now total_vm = 129023: user reserve min(129023/32 = 4031, 8192) -> allowed 124993.
        XCTAssertThrowsError(try m.anon(p, page)) { error in
            guard case MMError.outOfMemory = error else { return XCTFail("\(error)") }
        }
        // Shared and read-only mappings are not accountable.
        try m.mmap(p, length: page, protection: .read, flags: [.private, .anonymous])
        XCTAssertEqual(m.committedPages, 129_023)
        // CAP_SYS_ADMIN skips the admin reserve: allowed = 131072 - min(0, 8192) = 131072.
        let root = try m.spawn(comm: "root", capSysAdmin: true)
        XCTAssertThrowsError(try m.anon(root, 2049 * page))
        try m.anon(root, 2048 * page)
        XCTAssertEqual(m.committedPages, 131_071)
    }

    func testForkIsChargedPerAccountableVMA() throws {
        let m = never()
        let p = try m.spawn(comm: "p")
        try m.anon(p, 100_000 * page)
        try m.mmap(p, length: 10 * page, protection: .readWrite, flags: [.shared, .anonymous])
        XCTAssertEqual(m.committedPages, 100_010, "shmem is charged once, at mmap")
        // Child needs another 100000: 200010 >= 129024 - min(100010/32, 8192) -> ENOMEM.
        XCTAssertThrowsError(try m.fork(p)) { XCTAssertTrue("\($0)".hasPrefix("ENOMEM: fork")) }
        XCTAssertEqual(m.committedPages, 100_010)
        XCTAssertEqual(m.pids, [p])
        // With the ratio at 100: allowed = 262144 - 2048 - 3125 = 256971 > 200010.
        let n = never { $0.overcommitRatio = 100 }
        let q = try n.spawn(comm: "q")
        try n.anon(q, 100_000 * page)
        try n.fork(q)
        XCTAssertEqual(n.committedPages, 200_000)
    }

    func testHeuristicRefusesOnlyASingleRequestLargerThanRAMPlusSwap() throws {
        let m = Machine(MachineConfiguration(ramBytes: 1 * GiB, swapBytes: 1 * GiB, overcommitMode: .heuristic))
        let p = try m.spawn(comm: "p")
        XCTAssertThrowsError(try m.anon(p, 524_289 * page))
        try m.anon(p, 524_288 * page)
        try m.anon(p, 524_288 * page)
        XCTAssertEqual(m.committedPages, 1_048_576, "Committed_AS may exceed everything in mode 0")
        try m.fork(p)
        XCTAssertEqual(m.committedPages, 2_097_152)
        let always = Machine(MachineConfiguration(ramBytes: 1 * GiB, overcommitMode: .always))
        let q = try always.spawn(comm: "q")
        try always.anon(q, 1024 * GiB)
        XCTAssertEqual(always.committedPages, 268_435_456)
    }

    func testNoReserveMprotectBrkAndMunmapAccounting() throws {
        let heuristic = Machine(MachineConfiguration(ramBytes: 1 * GiB))
        let p = try heuristic.spawn(comm: "p")
        try heuristic.anon(p, 10 * page, flags: .noReserve)
        XCTAssertEqual(heuristic.committedPages, 0, "MAP_NORESERVE is honoured outside mode 2")
        let m = never()
        let q = try m.spawn(comm: "q")
        try m.anon(q, 10 * page, flags: .noReserve)
        XCTAssertEqual(m.committedPages, 10, "mode 2 ignores MAP_NORESERVE")
        let ro = try m.mmap(q, length: 8 * page, protection: .read, flags: [.private, .anonymous])
        try m.mprotect(q, ro, length: 8 * page, protection: .readWrite)
        XCTAssertEqual(m.committedPages, 18, "first write permission charges")
        try m.mprotect(q, ro, length: 8 * page, protection: .read)
        try m.mprotect(q, ro, length: 8 * page, protection: .readWrite)
        XCTAssertEqual(m.committedPages, 18, "VM_ACCOUNT stays; no second charge")
        let base = try m.currentBreak(q)
        try m.brk(q, base + 16 * page + 1)
        XCTAssertEqual(m.committedPages, 35, "17 pages of heap")
        try m.brk(q, base + 4 * page)
        XCTAssertEqual(m.committedPages, 22)
        try m.munmap(q, ro + 2 * page, length: 3 * page)
        XCTAssertEqual(m.committedPages, 19)
        XCTAssertEqual(m.vmas(q).count, 4, "10-page anon, 2 + 3 pages left of the split, heap")
        try m.exit(q)
        XCTAssertEqual(m.committedPages, 0)
    }
}
