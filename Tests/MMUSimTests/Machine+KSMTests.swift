@testable import MMUSim
import XCTest

final class MachineKSMTests: XCTestCase {
    func testKSMPagesAreAlwaysCopied() throws {
        let m = Machine()
        let p = try m.spawn(comm: "vm")
        let a = try m.anon(p, 4 * page)
        for (i, v) in [5, 5, 5, 9].enumerated() { try m.store(p, a + UInt64(i) * page, UInt64(v)) }
        try m.madvise(p, a, length: 4 * page, .mergeable)
        XCTAssertEqual(m.runKSM(), 3)
        let k = m.frameInfo(p, a)!
        XCTAssertTrue(k.isKSM)
        XCTAssertEqual([k.refcount, k.mapcount], [3, 3])
        XCTAssertEqual(m.frameInfo(p, a + 2 * page)!.frame, k.frame)
        XCTAssertFalse(m.frameInfo(p, a + 3 * page)!.isKSM)
        XCTAssertEqual(m.meminfo().anonPages, 2, "two duplicates freed")
        XCTAssertEqual(m.rss(p).anon, 4, "KSM pages still count as anon RSS")
        XCTAssertEqual(try m.write(p, a + page, length: 1).faults[.ksmCopy], 1)
        XCTAssertEqual(m.vmstat.cowKSM, 1)
        XCTAssertEqual(m.frameInfo(frame: k.frame).refcount, 2)
        // Even as the last user, a KSM page is copied, never reused.
        XCTAssertEqual(try m.write(p, a + 2 * page, length: 1).faults[.ksmCopy], 1)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.ksmCopy], 1)
        XCTAssertEqual(try m.load(p, a), 5)
    }
}
