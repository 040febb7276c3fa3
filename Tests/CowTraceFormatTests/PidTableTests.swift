import XCTest
import CowTraceFaultClass

/// PidTable (CowTraceFaultClass): pid or tid → value, against a Dictionary.
final class PidTableTests: XCTestCase {
    func testInsertLookUpRemoveReusesSlots() {
        var table = PidTable<String>()
        XCTAssertNil(table.slot(7))
        let a = table.insert(7, "a")
        let b = table.insert(8, "b")
        XCTAssertEqual(table.slot(7), a)
        XCTAssertEqual(table[slot: a], "a")
        XCTAssertEqual(table[slot: b], "b")
        table[slot: a] = "a2"
        XCTAssertEqual(table[slot: table.slot(7)!], "a2")
        table.remove(7, slot: a)
        XCTAssertNil(table.slot(7))
        XCTAssertEqual(table.count, 1)
        // The freed slot is handed out again.
        XCTAssertEqual(table.insert(9, "c"), a)
        XCTAssertEqual(table.values.sorted(), ["b", "c"])
    }

    func testTidsOutsideTheFlatRange() {
        var table = PidTable<Int>()
        let big = Int32(PidIndex.flatLimit), negative: Int32 = -5
        table.insert(big, 1)
        table.insert(negative, 2)
        table.insert(Int32.max, 3)
        XCTAssertEqual(table[slot: table.slot(big)!], 1)
        XCTAssertEqual(table[slot: table.slot(negative)!], 2)
        XCTAssertEqual(table[slot: table.slot(.max)!], 3)
        XCTAssertNil(table.slot(big - 1))
        table.remove(big, slot: table.slot(big)!)
        XCTAssertNil(table.slot(big))
        XCTAssertEqual(table.count, 2)
    }

    func testMatchesADictionary() {
        var table = PidTable<UInt64>()
        var reference: [Int32: UInt64] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let tid = Int32.random(in: 0..<3000, using: &rng) * (step % 7 == 0 ? 2048 : 1)
            let value = UInt64(step)
            if let i = table.slot(tid) {
                XCTAssertEqual(table[slot: i], reference[tid])
                if step % 3 == 0 {
                    table.remove(tid, slot: i)
                    reference[tid] = nil
                } else {
                    table[slot: i] = value
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

    func testSetGetRemoveAndDefault() {
        var t = PidTable<String>()
        XCTAssertNil(t[5])
        t[5] = "a"
        t[Int32.max] = "big"          // above the flat index: its dictionary
        t[-1] = "negative"
        XCTAssertEqual(t[5], "a")
        XCTAssertEqual(t[Int32.max], "big")
        XCTAssertEqual(t[-1], "negative")
        t[7, default: "x"] += "y"
        XCTAssertEqual(t[7], "xy")
        t[5, default: "x"] += "b"
        XCTAssertEqual(t[5], "ab")
        t[5] = nil
        XCTAssertNil(t[5])
        XCTAssertNil(t.slot(5))
        t[9] = "reuses the freed slot"
        XCTAssertEqual(t.values.sorted(), ["big", "negative", "reuses the freed slot", "xy"])
    }

    func testSlotChangesTheValueInPlace() throws {
        var t = PidTable<[Int]>()
        t[42] = [1]
        let i = try XCTUnwrap(t.slot(42))
        t[slot: i].append(2)
        XCTAssertEqual(t[42], [1, 2])
    }
}
