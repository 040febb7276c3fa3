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

    func testRowsAreSortedByCopies() {
        XCTAssertEqual(table().rows.map(\.pid), [11, 10])
        XCTAssertEqual(table().totals.copies, 340)
    }

    func testJSONIsValidAndCarriesEveryClassAndTheDrops() throws {
        var renderer = TableRenderer(format: .json)
        let line = renderer.render(table(), at: Date(timeIntervalSince1970: 0), final: true)
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

    func testTextReportsLostEvents() {
        var renderer = TableRenderer(format: .text)
        let text = renderer.render(table(), at: Date(), final: true)
        XCTAssertTrue(text.contains("LOST: 7 events"))
        XCTAssertTrue(text.contains("MIB-COPIED"))
    }
}
