import CowTraceKit
import XCTest

/// TraceHistory across pid reuse (pid_max wraps on long `stat --all` runs:
/// scripts/soak makes 200 000 processes with pid_max 32768, where this lost
/// every earlier process's counts). The live check is scripts/soak's stat
/// totals; here the snapshots are made up.
final class TraceHistoryTests: XCTestCase {
    private func identity(comm: String, start: UInt64, exited: Bool, exit: UInt64 = 0) -> ProcessIdentity {
        var i = ProcessIdentity(ppid: 1, comm: comm)
        i.startNanoseconds = start
        i.exited = exited
        i.exitNanoseconds = exit
        return i
    }

    private func copies(_ n: UInt64) -> ProcessCounters {
        var c = ProcessCounters()
        c.writeProtectFaults = n
        c.copies = n
        return c
    }

    private func snapshot(_ processes: [(Int32, ProcessIdentity, UInt64)]) -> TraceSnapshot {
        TraceSnapshot(counters: Dictionary(uniqueKeysWithValues: processes.map { ($0.0, copies($0.2)) }),
                      info: Dictionary(uniqueKeysWithValues: processes.map { ($0.0, $0.1) }), drops: DropCounts())
    }

    func testAReusedPidKeepsTheEarlierProcess() {
        var history = TraceHistory()
        let first = identity(comm: "first", start: 1, exited: true)
        var (merged, exited) = history.merge(snapshot([(100, first, 5), (200, identity(comm: "other", start: 1, exited: false), 1)]))
        XCTAssertEqual(exited, [100])
        XCTAssertEqual(merged.counters[100]?.copies, 5)

        // The kernel forgot pid 100; a new process took the pid and is live.
        (merged, exited) = history.merge(snapshot([(100, identity(comm: "second", start: 2, exited: false), 7)]))
        XCTAssertEqual(exited, [])
        XCTAssertEqual(merged.counters[100]?.copies, 7)
        XCTAssertEqual(merged.info[100]?.comm, "second")
        XCTAssertEqual(history.earlier.map(\.pid), [100])
        XCTAssertEqual(history.earlier.first?.counters.copies, 5)
        XCTAssertEqual(history.earlier.first?.info?.comm, "first")
        var table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier)
        XCTAssertEqual(table.rows.filter { $0.pid == 100 }.map(\.comm).sorted(), ["first", "second"])
        XCTAssertEqual(table.totals.copies, 12)

        // The second one exits, then neither is in the kernel's maps.
        (merged, exited) = history.merge(snapshot([(100, identity(comm: "second", start: 2, exited: true), 9)]))
        XCTAssertEqual(exited, [100])
        (merged, _) = history.merge(snapshot([]))
        table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier)
        XCTAssertEqual(table.rows.map(\.pid), [100, 100])
        XCTAssertTrue(table.rows.allSatisfy(\.exited))
        XCTAssertEqual(table.totals.copies, 14)
    }

    func testTheSameExitedProcessSeenTwiceIsOneRow() {
        var history = TraceHistory()
        let gone = identity(comm: "gone", start: 3, exited: true)
        _ = history.merge(snapshot([(300, gone, 4)]))
        // Still in the kernel's maps (forget had not taken effect): the same identity.
        var (merged, _) = history.merge(snapshot([(300, gone, 4)]))
        XCTAssertTrue(history.earlier.isEmpty)
        (merged, _) = history.merge(snapshot([]))
        let table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier)
        XCTAssertEqual(table.rows.map(\.pid), [300])
        XCTAssertEqual(table.totals.copies, 4)
    }

    /// --max-exited: beyond the bound the oldest exits are folded into one
    /// sum; the sums are exact, the bound holds, and a folded process the
    /// kernel still shows once more is not counted twice.
    func testFoldKeepsTheNewestExitsAndExactSums() {
        var history = TraceHistory(maxExited: 3)
        // pids 1...10 exit at times 1000-pid (pid 10 exited first), copying pid pages each; pid 50 is live.
        let exitedNow = (1...10).map { pid in (Int32(pid), identity(comm: "p\(pid)", start: 1, exited: true, exit: UInt64(1000 - pid)), UInt64(pid)) }
        let live = (Int32(50), identity(comm: "live", start: 1, exited: false), UInt64(100))
        var (merged, exited) = history.merge(snapshot(exitedNow + [live]))
        XCTAssertEqual(Set(exited), Set((1...10).map { Int32($0) }), "every exited pid is forgotten in the kernel")
        XCTAssertEqual(history.keptExited, 3)
        XCTAssertEqual(history.folded.processes, 7)
        XCTAssertEqual(history.folded.counters.copies, UInt64((4...10).reduce(0, +)), "the 7 oldest exits: pids 10...4")
        var table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier, folded: history.folded)
        XCTAssertEqual(table.rows.map(\.pid).sorted(), [1, 2, 3, 50])
        XCTAssertEqual(table.totals.copies, 55 + 100)

        // The kernel still shows pid 7 (folded) and pid 2 (kept) once more: neither counts twice.
        let again = exitedNow.filter { $0.0 == 7 || $0.0 == 2 }
        (merged, exited) = history.merge(snapshot(again + [live]))
        XCTAssertEqual(Set(exited), [2, 7])
        table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier, folded: history.folded)
        XCTAssertEqual(table.rows.map(\.pid).sorted(), [1, 2, 3, 50])
        XCTAssertEqual(table.totals.copies, 155)
        XCTAssertEqual(history.folded.processes, 7)

        // Two more exits: the bound still holds, the oldest kept (pid 3, then 2) fold.
        (merged, _) = history.merge(snapshot([(60, identity(comm: "late", start: 2, exited: true, exit: 2000), 60),
                                               (61, identity(comm: "later", start: 2, exited: true, exit: 2001), 61), live]))
        table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier, folded: history.folded)
        XCTAssertEqual(history.keptExited, 3)
        XCTAssertEqual(history.folded.processes, 9)
        XCTAssertEqual(table.rows.map(\.pid).sorted(), [1, 50, 60, 61])
        XCTAssertEqual(table.totals.copies, 155 + 121)
        XCTAssertEqual(table.totals.writeProtectFaults, 155 + 121)
    }

    /// A pid reused after the fold: the earlier process folds (it exited
    /// first), the later one with its pid keeps its own row.
    func testFoldWithPidReuse() {
        var history = TraceHistory(maxExited: 2)
        _ = history.merge(snapshot([(100, identity(comm: "first", start: 1, exited: true, exit: 10), 5)]))
        _ = history.merge(snapshot([(100, identity(comm: "second", start: 2, exited: false), 7)]))
        XCTAssertEqual(history.earlier.map(\.pid), [100])
        _ = history.merge(snapshot([(100, identity(comm: "second", start: 2, exited: true, exit: 30), 9),
                                    (200, identity(comm: "other", start: 3, exited: true, exit: 20), 11)]))
        // Kept: earlier 100 (exit 10), 200 (exit 20), 100 (exit 30): one too many; the earlier 100 folds.
        let (merged, _) = history.merge(snapshot([]))
        XCTAssertTrue(history.earlier.isEmpty)
        XCTAssertEqual(history.folded, FoldedProcesses(processes: 1, counters: copies(5)))
        let table = ProcessTable(snapshot: merged, tier: .tracepoint, pageSize: 4096, earlier: history.earlier, folded: history.folded)
        XCTAssertEqual(table.rows.map(\.comm).sorted(), ["other", "second"])
        XCTAssertEqual(table.totals.copies, 5 + 9 + 11)
    }

    /// 0 keeps every exited process.
    func testZeroKeepsAll() {
        var history = TraceHistory(maxExited: 0)
        _ = history.merge(snapshot((1...50).map { (Int32($0), identity(comm: "p", start: 1, exited: true, exit: UInt64($0)), 1) }))
        XCTAssertEqual(history.keptExited, 50)
        XCTAssertEqual(history.folded.processes, 0)
    }
}
