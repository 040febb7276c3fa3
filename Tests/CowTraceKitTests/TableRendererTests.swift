import CowTraceKit
import Foundation
import XCTest

final class TableRendererTests: XCTestCase {
    private func table() -> ProcessTable {
        var parent = ProcessCounters()
        parent.writeProtectFaults = 100
        parent.copies = 40
        parent.zeroFills = 10
        parent.forks = 1
        var child = ProcessCounters()
        child.writeProtectFaults = 300
        child.copies = 300
        var drops = DropCounts()
        drops.ringBufferFull = 7
        let snapshot = TraceSnapshot(
            counters: [10: parent, 11: child],
            info: [10: ProcessIdentity(ppid: 1, comm: "parent,\"x\""), 11: ProcessIdentity(ppid: 10, comm: "child")],
            drops: drops)
        return ProcessTable(snapshot: snapshot, tier: .tracepoint, pageSize: 4096)
    }

    /// Folded exited processes (stat --max-exited): one summed row in every
    /// format, part of the totals.
    func testFoldedProcessesAreOneSummedRowInEveryFormat() throws {
        var sum = ProcessCounters()
        sum.writeProtectFaults = 500
        sum.copies = 450
        sum.forks = 3
        let base = table()
        let snapshot = TraceSnapshot(counters: Dictionary(uniqueKeysWithValues: base.rows.map { ($0.pid, $0.counters) }),
                                     info: [:], drops: DropCounts())
        let folded = ProcessTable(snapshot: snapshot, tier: .tracepoint, pageSize: 4096,
                                  folded: FoldedProcesses(processes: 7, counters: sum))
        XCTAssertEqual(folded.totals.copies, 340 + 450)

        var json = TableRenderer(format: .json)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.render(folded, at: Date(), final: true).utf8)) as? [String: Any])
        let f = try XCTUnwrap(object["folded_exited"] as? [String: Any])
        XCTAssertEqual(f["processes"] as? Int, 7)
        XCTAssertEqual(f["copies"] as? Int, 450)
        XCTAssertEqual(f["reuses"] as? Int, 50)
        XCTAssertEqual(f["bytes_copied"] as? Int, 450 * 4096)
        XCTAssertEqual(f["forks"] as? Int, 3)
        var plain = TableRenderer(format: .json)
        let none = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(plain.render(base, at: Date(), final: true).utf8)) as? [String: Any])
        XCTAssertEqual((none["folded_exited"] as? [String: Any])?["processes"] as? Int, 0)

        var csv = TableRenderer(format: .csv)
        let rows = csv.render(folded, at: Date(), final: true).split(separator: "\n")
        XCTAssertEqual(rows.count, 1 + 2 + 1)
        let last = rows.last!.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(last.count, TableRenderer.csvHeader.split(separator: ",").count)
        XCTAssertEqual(Array(last[1...5]), ["", "", "7 exited processes folded", "500", "450"])
        XCTAssertEqual(last.last, "1")

        var text = TableRenderer(format: .text, maxRows: 1)
        let out = text.render(folded, at: Date(), final: true)
        XCTAssertTrue(out.contains("(7 folded)*"), out)
        XCTAssertTrue(out.contains("7 exited processes folded: the oldest exits beyond --max-exited"), out)
        XCTAssertTrue(out.contains("... 1 more processes"), out)
    }

    func testRowsAreSortedByCopies() {
        XCTAssertEqual(table().rows.map(\.pid), [11, 10])
        XCTAssertEqual(table().totals.copies, 340)
    }

    func testJSONIsValidAndCarriesEveryClassAndTheDrops() throws {
        var renderer = TableRenderer(format: .json)
        let line = renderer.render(table(), at: Date(timeIntervalSince1970: 0), final: true)
        XCTAssertTrue(line.hasPrefix("{\"schema_version\":1,\"time\":"), line)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["tier"] as? String, "tracepoint")
        XCTAssertEqual((object["lost"] as? [String: Any])?["ring_buffer_full"] as? Int, 7)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        XCTAssertEqual(processes.count, 2)
        let parent = try XCTUnwrap(processes.first { $0["pid"] as? Int == 10 })
        XCTAssertEqual(parent["comm"] as? String, "parent,\"x\"")
        XCTAssertEqual(parent["reuses"] as? Int, 50)
        XCTAssertEqual(parent["bytes_copied"] as? Int, 40 * 4096)
    }

    func testCSVQuotesAndHeaderOnce() {
        var renderer = TableRenderer(format: .csv)
        let first = renderer.render(table(), at: Date(), final: false)
        let second = renderer.render(table(), at: Date(), final: true)
        XCTAssertTrue(first.hasPrefix(TableRenderer.csvHeader + "\n"))
        XCTAssertFalse(second.contains("time,pid"))
        XCTAssertTrue(first.contains("\"parent,\"\"x\"\"\""))
        XCTAssertEqual(first.split(separator: "\n").count, 3)
    }

    private func tableWithThreads() -> ProcessTable {
        var process = ProcessCounters()
        process.writeProtectFaults = 30
        process.copies = 30
        var writer = ProcessCounters()
        writer.writeProtectFaults = 20
        writer.copies = 20
        var main = ProcessCounters()
        main.writeProtectFaults = 10
        main.copies = 10
        let snapshot = TraceSnapshot(
            counters: [20: process], info: [20: ProcessIdentity(ppid: 1, comm: "server")], drops: DropCounts(),
            threads: [21: ThreadCounters(tid: 21, pid: 20, comm: "writer", counters: writer, exited: true),
                      20: ThreadCounters(tid: 20, pid: 20, comm: "server", counters: main, exited: false)])
        return ProcessTable(snapshot: snapshot, tier: .fentry, pageSize: 4096, showsThreads: true)
    }

    func testThreadsInEveryFormat() throws {
        var json = TableRenderer(format: .json)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.render(tableWithThreads(), at: Date(), final: true).utf8)) as? [String: Any])
        let process = try XCTUnwrap((object["processes"] as? [[String: Any]])?.first)
        let threads = try XCTUnwrap(process["threads"] as? [[String: Any]])
        XCTAssertEqual(threads.map { $0["tid"] as? Int }, [21, 20], "most copies first")
        XCTAssertEqual(threads.first?["comm"] as? String, "writer")
        XCTAssertEqual(threads.first?["exited"] as? Bool, true)

        var csv = TableRenderer(format: .csv)
        let lines = csv.render(tableWithThreads(), at: Date(), final: true).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(String(lines[0]), TableRenderer.csvHeaderWithThreads)
        let columns = TableRenderer.csvHeaderWithThreads.split(separator: ",").count
        XCTAssertTrue(lines.dropFirst().filter { !$0.isEmpty }.allSatisfy { $0.split(separator: ",", omittingEmptySubsequences: false).count == columns })
        XCTAssertTrue(lines[2].hasSuffix(",21") && lines[2].contains(",writer,"), String(lines[2]))

        var text = TableRenderer(format: .text)
        let out = text.render(tableWithThreads(), at: Date(), final: true)
        XCTAssertTrue(out.contains("└ writer*"), out)

        // Without --threads the schema is unchanged.
        var plain = TableRenderer(format: .json)
        XCTAssertFalse(plain.render(table(), at: Date(), final: true).contains("threads"))
    }

    func testTextReportsLostEvents() {
        var renderer = TableRenderer(format: .text)
        let text = renderer.render(table(), at: Date(), final: true)
        XCTAssertTrue(text.contains("LOST: 7 events"))
        XCTAssertTrue(text.contains("MIB-COPIED"))
    }
}
