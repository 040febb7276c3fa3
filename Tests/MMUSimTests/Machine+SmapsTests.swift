@testable import MMUSim
import XCTest

final class MachineSmapsTests: XCTestCase {
    func testPSSAndPrivateSharedDirtyFollowForkAndCopy() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 4 * page)
        try m.write(p, a, length: 4 * page)
        var s = m.smaps(p)
        XCTAssertEqual([s.rss, s.pss, s.privateDirty, s.sharedDirty, s.anonymous], [16384, 16384, 16384, 0, 16384])
        let c = try m.fork(p)
        // Every page mapped twice: Pss = 4 x 4096/2 = 8192, all Shared_Dirty.
        s = m.smaps(p)
        XCTAssertEqual([s.rss, s.pss, s.privateDirty, s.sharedDirty], [16384, 8192, 0, 16384])
        try m.write(c, a, length: 1)
        // Child: its copy 4096 private + 3 x 2048 shared = 10240; the parent's original is private again.
        s = m.smaps(c)
        XCTAssertEqual([s.rss, s.pss, s.privateDirty, s.sharedDirty], [16384, 10240, 4096, 12288])
        s = m.smaps(p)
        XCTAssertEqual([s.rss, s.pss, s.privateDirty, s.sharedDirty], [16384, 10240, 4096, 12288])
        // Clean page-cache pages are Private_Clean / Shared_Clean; the zero page is not counted.
        let f = m.createFile("f", size: page)
        let b = try m.mmap(p, length: page, protection: .read, flags: .private, file: f)
        try m.read(p, b, length: 1)
        let z = try m.anon(p, page)
        try m.read(p, z, length: 1)
        s = m.smaps(p)
        XCTAssertEqual(s.rss, 20480)
        // The file page has refcount 2 (cache + map) but mapcount 1 < 2: Private_Clean.
        XCTAssertEqual([s.privateClean, s.sharedClean], [4096, 0])
    }
}
