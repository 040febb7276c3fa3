@testable import CowTraceReplay
import MMUSim
import XCTest

/// ExitedSharers (TraceReplayer+Races.swift) answers as a dictionary from
/// frame to the latest exit that shared it, filled page by page in address
/// order, would; it keeps each exit's pages as runs.
final class ExitedSharersTests: XCTestCase {
    let base: UInt64 = 0x7f00_0000_0000

    func run(_ page: UInt64, _ frame: Int, _ count: Int) -> SharedPageRun {
        SharedPageRun(address: base + page * 4096, frame: frame, count: count)
    }

    func testLooksFramesUpInsideRuns() {
        var s = ExitedSharers()
        XCTAssertTrue(s.isEmpty)
        s.add(pid: 7, time: 100, runs: [run(0, 2000, 4), run(10, 1000, 2)])
        XCTAssertFalse(s.isEmpty)
        XCTAssertEqual(s[2002]?.address, base + 2 * 4096)
        XCTAssertEqual(s[2002]?.pid, 7)
        XCTAssertEqual(s[2002]?.time, 100)
        XCTAssertEqual(s[1001]?.address, base + 11 * 4096)
        for frame in [999, 1002, 1999, 2004] { XCTAssertNil(s[frame], "frame \(frame)") }
        XCTAssertEqual(s.oldestTime, 100)
        XCTAssertEqual(s.pids, [7])
    }

    /// A frame mapped at two addresses keeps the higher one.
    func testAFrameGivenTwiceKeepsItsHighestAddress() {
        var s = ExitedSharers()
        s.add(pid: 7, time: 100, runs: [run(0, 500, 3), run(8, 501, 3)])
        XCTAssertEqual(s[500]?.address, base)
        XCTAssertEqual(s[501]?.address, base + 8 * 4096)
        XCTAssertEqual(s[502]?.address, base + 9 * 4096)
        XCTAssertEqual(s[503]?.address, base + 10 * 4096)
        XCTAssertNil(s[504])
    }

    /// A later exit takes over the frames it shares; an exit whose frames
    /// were all taken over is gone, and expired exits are dropped.
    func testLaterExitsTakeFramesOverAndExpire() {
        var s = ExitedSharers()
        s.add(pid: 7, time: 100, runs: [run(0, 500, 2)])
        s.add(pid: 8, time: 200, runs: [run(4, 501, 2)])
        XCTAssertEqual(s[500]?.pid, 7)
        XCTAssertEqual(s[501]?.pid, 8)
        XCTAssertEqual(s[501]?.address, base + 4 * 4096)
        XCTAssertEqual(s.pids, [7, 8])
        s.add(pid: 9, time: 300, runs: [run(0, 500, 1)])
        XCTAssertEqual(s[500]?.pid, 9)
        XCTAssertEqual(s.pids, [8, 9], "pid 7 holds no frame any more")
        XCTAssertEqual(s.oldestTime, 200)
        s.removeExits { $0 < 250 }
        XCTAssertNil(s[501])
        XCTAssertEqual(s[500]?.pid, 9)
        s.removeExits { _ in true }
        XCTAssertTrue(s.isEmpty)
        XCTAssertNil(s[500])
    }

    func testAnExitWithNoSharedPagesAddsNothing() {
        var s = ExitedSharers()
        s.add(pid: 7, time: 100, runs: [])
        XCTAssertTrue(s.isEmpty)
        XCTAssertNil(s.oldestTime)
    }

    /// FrameFault stores no optional; its disagreement reads back as given.
    func testFrameFaultKeepsItsDisagreement() {
        var f = TraceReplayer.FrameFault(pid: 3, start: 10, end: 20, kernel: .copy, disagreement: nil)
        XCTAssertNil(f.disagreement)
        f.disagreement = 12
        XCTAssertEqual(f.disagreement, 12)
        XCTAssertEqual([f.start, f.end], [10, 20])
        XCTAssertEqual(f.pid, 3)
        XCTAssertEqual(f.kernel, .copy)
        f.disagreement = nil
        XCTAssertNil(f.disagreement)
    }
}
