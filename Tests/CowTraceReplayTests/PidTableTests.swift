@testable import CowTraceReplay
import CowTraceFaultClass
import XCTest

final class PidTableTests: XCTestCase {
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
