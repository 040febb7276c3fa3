@testable import MMUSim
import XCTest

/// FrameTable: the packed per-frame record and the page contents kept in a
/// column of their own, made at the first nonzero value.
final class FrameTableTests: XCTestCase {
    func testContentsColumnIsMadeAtTheFirstNonzeroValueOnly() {
        let frames = FrameTable(frames: 64)
        let f = frames.allocate()
        XCTAssertEqual(frames.contents[f], 0)
        frames.contents[f] = 0
        XCTAssertFalse(frames.contents.isAllocated, "a zero stores nothing")
        frames.contents[f] = 42
        XCTAssertTrue(frames.contents.isAllocated)
        XCTAssertEqual(frames.contents[f], 42)
        XCTAssertEqual(frames.contents[f + 1], 0, "other frames stay zero")
    }

    func testFieldsAreIndependentColumnsOfOneRecord() {
        let frames = FrameTable(frames: 64)
        let f = frames.allocate()
        frames.refcount[f] = 3
        frames.mapcount[f] = 2
        frames.owner[f] = -7
        frames.memcg[f] = 9
        frames.set(f, .anon)
        frames.set(f, .anonExclusive)
        frames.contents[f] = .max
        XCTAssertEqual([frames.refcount[f], frames.mapcount[f], frames.owner[f]], [3, 2, -7])
        XCTAssertEqual(frames.memcg[f], 9)
        XCTAssertTrue(frames.has(f, .anon) && frames.has(f, .anonExclusive) && !frames.has(f, .ksm))
        XCTAssertEqual(frames.contents[f], .max)
        frames.clear(f, .anonExclusive)
        XCTAssertFalse(frames.has(f, .anonExclusive))
        for g in [f - 1, f + 1] {
            XCTAssertEqual([frames.refcount[g], frames.mapcount[g], frames.owner[g]], [0, 0, 0], "frame \(g)")
            XCTAssertEqual(frames.flags[g], 0)
            XCTAssertEqual(frames.contents[g], 0)
        }
    }

    func testReleaseClearsTheRecordAndContentsAndReusesTheFrame() {
        let frames = FrameTable(frames: 64)
        let f = frames.allocate()
        frames.refcount[f] = 1
        frames.set(f, .anon)
        frames.contents[f] = 7
        frames.release(f)
        XCTAssertEqual(frames.allocate(), f, "a freed frame is handed out first")
        XCTAssertEqual(frames.refcount[f], 0)
        XCTAssertEqual(frames.flags[f], 0)
        XCTAssertEqual(frames.contents[f], 0)
    }

    /// The free frames are a stack linked through their records: the last
    /// freed goes out first, each with a clean record, then never-used ones.
    func testFreedFramesGoOutLastFirstWithCleanRecords() {
        let frames = FrameTable(frames: 64)
        let taken = (0..<5).map { _ in frames.allocate() }
        for f in taken {
            frames.refcount[f] = 2
            frames.mapcount[f] = 1
            frames.owner[f] = 4000
            frames.memcg[f] = 3
            frames.set(f, .anon)
        }
        for f in [taken[1], taken[3], taken[0]] { frames.release(f) }
        var again: [Int] = []
        for _ in 0..<4 {
            let f = frames.allocate()
            again.append(f)
            XCTAssertEqual([frames.refcount[f], frames.mapcount[f], frames.owner[f]], [0, 0, 0], "frame \(f)")
            XCTAssertEqual(frames.memcg[f], 0)
            XCTAssertEqual(frames.flags[f], 0)
        }
        XCTAssertEqual(again, [taken[0], taken[3], taken[1], taken[4] + 1], "last freed first, then a new frame")
        // A frame freed, taken and freed again goes back on top.
        frames.release(again[1])
        XCTAssertEqual(frames.allocate(), again[1])
    }

    /// A huge allocation puts the frames it skips to align on the free list, above those already there.
    func testFramesSkippedForAHugePageGoOnTheFreeList() {
        let frames = FrameTable(frames: 4096)
        let first = frames.allocate()
        let second = frames.allocate()
        frames.owner[second] = 77
        frames.release(second)
        let huge = frames.allocateHuge()
        XCTAssertEqual(huge % Paging.hugePageFrames, 0)
        XCTAssertGreaterThan(huge, second)
        // Skipped in ascending order, so the last skipped goes out first, then on down, then the older free frame.
        var expected: [Int] = Array(((second + 1)..<huge).reversed())
        expected.append(second)
        var out: [Int] = []
        for _ in expected.indices {
            let f = frames.allocate()
            out.append(f)
            XCTAssertEqual([frames.refcount[f], frames.mapcount[f], frames.owner[f]], [0, 0, 0], "frame \(f)")
        }
        XCTAssertEqual(out, expected)
        XCTAssertEqual(frames.allocate(), huge + Paging.hugePageFrames, "then frames never used")
        XCTAssertNotEqual(first, second)
    }

    /// A free frame reads as free from outside, whatever its record links to.
    func testAFreeFramesInfoShowsNoOwner() {
        let m = Machine()
        let (g, h) = (m.frames.allocate(), m.frames.allocate())
        m.frames.release(g)
        m.frames.release(h)
        XCTAssertNotEqual(m.frames.owner[h], 0, "h links to g")
        XCTAssertEqual(m.frameInfo(frame: h), FrameInfo(frame: h, refcount: 0, mapcount: 0, isAnon: false,
                                                        isAnonExclusive: false, isKSM: false, isZeroPage: false,
                                                        isPageCache: false, isHuge: false, owner: 0, contents: 0))
    }

    /// A copy keeps the contents word of the page it copies; a zero-filled page has none.
    func testCopiesCarryContents() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 2 * page)
        try m.store(p, a, 0xfeed)
        _ = try m.write(p, a + page, length: 1)
        let c = try m.fork(p)
        try m.store(c, a, 0xbeef)
        XCTAssertEqual(try m.load(p, a), 0xfeed)
        XCTAssertEqual(try m.load(c, a), 0xbeef)
        _ = try m.write(c, a + page, length: 1)
        XCTAssertEqual(try m.load(c, a + page), 0)
        XCTAssertNotEqual(m.frameInfo(p, a + page)?.frame, m.frameInfo(c, a + page)?.frame, "copied")
    }
}
