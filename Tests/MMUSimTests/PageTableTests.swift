@testable import MMUSim
import XCTest

final class PageTableTests: XCTestCase {
    func testEntryBitsAreTheHardwareOnes() {
        XCTAssertEqual(PageTableEntry.present, 0x1)
        XCTAssertEqual(PageTableEntry.write, 0x2)
        XCTAssertEqual(PageTableEntry.user, 0x4)
        XCTAssertEqual(PageTableEntry.accessed, 0x20)
        XCTAssertEqual(PageTableEntry.dirty, 0x40)
        XCTAssertEqual(PageTableEntry.huge, 0x80)
        XCTAssertEqual(PageTableEntry.special, 0x200)
        let e = PageTableEntry(frame: 0x1234, flags: PageTableEntry.present | PageTableEntry.write)
        XCTAssertEqual(e.rawValue, 0x123_4003)
        XCTAssertEqual(e.frame, 0x1234)
        XCTAssertTrue(e.isPresent && e.isWritable && !e.isDirty)
    }

    func testIndicesSplitTheAddressNineBitsPerLevel() {
        // 0x7f12_3456_7000 = PGD 254, PUD 72, PMD 418, PTE 359 (bits 47-39, 38-30, 29-21, 20-12).
        let a: UInt64 = 0x7f12_3456_7000
        XCTAssertEqual(Paging.pgdIndex(a), 254)
        XCTAssertEqual(Paging.pudIndex(a), 72)
        XCTAssertEqual(Paging.pmdIndex(a), 418)
        XCTAssertEqual(Paging.pteIndex(a), 359)
    }

    func testWalkAllocatesOneTablePerLevelAndCountsThemLikeMMPgtablesBytes() {
        let pool = TablePool()
        let host = pool.pages
        do {
            let pt = PageTable(pool: pool)
            XCTAssertNil(pt.walk(0x40_0000, allocate: false))
            let slot = pt.walk(0x40_0000, allocate: true)!
            slot.pointee = 0x5000 | PageTableEntry.present
            // PUD + PMD + PTE tables; the PGD is not counted.
            XCTAssertEqual(pt.nrPuds, 1); XCTAssertEqual(pt.nrPmds, 1); XCTAssertEqual(pt.nrPtes, 1)
            XCTAssertEqual(pt.pgtablesBytes, 3 * 4096)
            // Same 2 MiB: same PTE table, next slot.
            XCTAssertEqual(pt.walk(0x40_1000, allocate: true)!, slot + 1)
            XCTAssertEqual(pt.pgtablesPages, 3)
            // 1 GiB further: a new PMD table and PTE table under the same PUD table.
            _ = pt.walk(0x4040_0000, allocate: true)
            XCTAssertEqual(pt.pgtablesPages, 5)
            XCTAssertEqual(host.pointee, 5)
            XCTAssertEqual(pt.walk(0x40_0000, allocate: false)!.pointee, 0x5001)
            // Freeing [0x40000000, 0x80000000) with nothing mapped there drops its PTE and PMD table... of that GiB only.
            pt.freeTables(start: 0x4000_0000, end: 0x8000_0000) { _, _ in false }
            XCTAssertEqual(pt.pgtablesPages, 3)
            XCTAssertNotNil(pt.walk(0x40_0000, allocate: false))
        }
        XCTAssertEqual(host.pointee, 0, "deinit frees every table")
    }

    func testUpperEntriesHoldTheNextTablesAddress() {
        let pt = PageTable(pool: TablePool())
        let pte = pt.walk(0x1000, allocate: true)!
        let pmdSlot = pt.walk(0x1000, to: .pmd, allocate: false)!
        let entry = PageTableEntry(rawValue: pmdSlot.pointee)
        XCTAssertTrue(entry.isPresent && entry.isWritable && !entry.isHuge)
        // The PMD entry's frame bits are the PTE table's address: slot 1 of that table is our PTE.
        XCTAssertEqual(UInt(entry.rawValue & PageTableEntry.frameMask) + 8, UInt(bitPattern: pte))
    }
}
