import CowTraceKit
import XCTest

/// TraceHistory across pid reuse (pid_max wraps on long `stat --all` runs:
/// scripts/soak makes 200 000 processes with pid_max 32768, where this lost
/// every earlier process's counts). The live check is scripts/soak's stat
/// totals; here the snapshots are made up.
final class TraceHistoryTests: XCTestCase {
    private func identity(comm: String, start: UInt64, exited: Bool) -> ProcessIdentity {
        var i = ProcessIdentity(ppid: 1, comm: comm)
        i.startNanoseconds = start
        i.exited = exited
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
}
