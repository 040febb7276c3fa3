import XCTest
@testable import CowTraceFormat

/// ThreadTable (RecordedTotals.swift): tid → value, against a Dictionary.
final class ThreadTableTests: XCTestCase {
    func testInsertLookUpRemoveReusesSlots() {
        var table = ThreadTable<String>()
        XCTAssertNil(table.slot(7))
        let a = table.insert(7, "a")
        let b = table.insert(8, "b")
        XCTAssertEqual(table.slot(7), a)
        XCTAssertEqual(table[a], "a")
        XCTAssertEqual(table[b], "b")
        table[a] = "a2"
        XCTAssertEqual(table[table.slot(7)!], "a2")
        table.remove(7, slot: a)
        XCTAssertNil(table.slot(7))
        XCTAssertEqual(table.count, 1)
        // The freed slot is handed out again.
        XCTAssertEqual(table.insert(9, "c"), a)
        XCTAssertEqual(table.values.sorted(), ["b", "c"])
    }

    func testTidsOutsideTheFlatRange() {
        var table = ThreadTable<Int>()
        let big = Int32(PidIndex.flatLimit), negative: Int32 = -5
        table.insert(big, 1)
        table.insert(negative, 2)
        table.insert(Int32.max, 3)
        XCTAssertEqual(table[table.slot(big)!], 1)
        XCTAssertEqual(table[table.slot(negative)!], 2)
        XCTAssertEqual(table[table.slot(.max)!], 3)
        XCTAssertNil(table.slot(big - 1))
        table.remove(big, slot: table.slot(big)!)
        XCTAssertNil(table.slot(big))
        XCTAssertEqual(table.count, 2)
    }

    func testMatchesADictionary() {
        var table = ThreadTable<UInt64>()
        var reference: [Int32: UInt64] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let tid = Int32.random(in: 0..<3000, using: &rng) * (step % 7 == 0 ? 2048 : 1)
            let value = UInt64(step)
            if let i = table.slot(tid) {
                XCTAssertEqual(table[i], reference[tid])
                if step % 3 == 0 {
                    table.remove(tid, slot: i)
                    reference[tid] = nil
                } else {
                    table[i] = value
                    reference[tid] = value
                }
            } else {
                XCTAssertNil(reference[tid])
                table.insert(tid, value)
                reference[tid] = value
            }
        }
        XCTAssertEqual(table.count, reference.count)
        XCTAssertEqual(table.values.sorted(), reference.values.sorted())
    }
}
