import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace hist` and `cowtrace stat --stacks` on the real kernel: the
/// histograms the kernel bucketed add up to what the workload did, and the
/// copy stacks name the workload's functions.
final class HistCLITests: XCTestCase {
    func testHistogramsAddUpToTheChildsCopies() throws {
        try requireBPF()
        let pages = 4096
        let r = try runProduct("cowtrace", ["hist", "--format", "json", "-c", productPath("cowtrace-workload"),
                                            "--pages", "8192", "child:write:0:\(pages)", "child:exit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let child = try XCTUnwrap(workloadLine(r.stdout)?["child"] as? Int, r.stdout)
        let json = String(try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{\"schema_version\":1,\"time\"") }))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let mine = try XCTUnwrap(processes.first { $0["pid"] as? Int == child }, "child \(child) missing: \(json)")
        let hists = try XCTUnwrap(mine["histograms"] as? [[String: Any]])
        func hist(_ kind: String, mapping: String? = nil) -> [String: Any]? {
            hists.first { $0["kind"] as? String == kind && (mapping == nil || $0["mapping"] as? String == mapping) }
        }
        // Every copy lands in exactly one interval: the values sum to the copies.
        let burst = try XCTUnwrap(hist("copies-per-interval"), json)
        let copies = try XCTUnwrap(burst["sum"] as? Int)
        XCTAssertEqual(copies, pages, accuracy: pageSlack(pages), "copies summed over intervals")
        // The region is an anonymous mmap: its write faults, valued by offset, reach up to 16 MiB.
        let anon = try XCTUnwrap(hist("offset-in-mapping", mapping: "anon-mmap"), json)
        XCTAssertEqual(anon["count"] as? Int ?? 0, pages, accuracy: pageSlack(pages), "write-protect faults in the anon mapping")
        let buckets = try XCTUnwrap(anon["buckets"] as? [[String: Any]])
        let top = try XCTUnwrap(buckets.last { ($0["count"] as? Int ?? 0) > 0 })
        // The child writes pages 0..<4096: offsets up to 16 MiB - 4 KiB, bucket [8 MiB, 16 MiB).
        XCTAssertEqual(top["low"] as? Int, 8 << 20)
        XCTAssertEqual(top["count"] as? Int ?? 0, pages / 2, accuracy: pageSlack(pages / 2))
        // The tracepoint tier cannot time faults: no latency histogram, and it says so.
        XCTAssertNil(hist("copy-latency"))
    }

    func testHistTextIsTheBccLayout() throws {
        try requireBPF()
        let r = try runProduct("cowtrace", ["hist", "-c", productPath("cowtrace-workload"), "--pages", "2048", "child:write:0:1024", "child:exit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains(" : count    distribution"), r.stdout)
        XCTAssertTrue(r.stdout.contains("copies-per-interval (copies)"), r.stdout)
        XCTAssertTrue(r.stderr.contains("cannot see a fault return"), r.stderr)
    }

    func testStacksNameTheFunctionsThatWroteAfterFork() throws {
        try requireBPF()
        let pages = 4096
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-stacks-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let folded = dir.appendingPathComponent("copies.folded").path
        let r = try runProduct("cowtrace", ["stat", "--stacks", folded, "-c", productPath("cowtrace-workload"),
                                            "--pages", "8192", "child:write:0:\(pages)", "child:exit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try String(contentsOfFile: folded, encoding: .utf8)
        // "comm;…;main;touch;touch_region;user_touch 4096": the workload's own functions, leaf last.
        let lines = text.split(separator: "\n")
        let top = try XCTUnwrap(lines.first, "no stacks")
        XCTAssertTrue(top.hasPrefix("cowtrace-worklo;"), String(top))
        let frames = top.split(separator: " ").dropLast().joined(separator: " ").split(separator: ";")
        XCTAssertEqual(frames.last, "user_touch", String(top))
        XCTAssertTrue(frames.contains("main"), String(top))
        let count = Int(top.split(separator: " ").last ?? "") ?? 0
        XCTAssertEqual(count, pages, accuracy: pageSlack(pages), String(top))
        let attributes = try FileManager.default.attributesOfItem(atPath: folded)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o644)
    }

    func testStacksRefuseASymlinkAndAMissingDirectory() throws {
        try requireBPF()
        let link = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-link-\(getpid())").path
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/tmp/cowtrace-target-\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: link) }
        let r = try runProduct("cowtrace", ["stat", "--stacks", link, "-c", "/bin/true"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("is a symbolic link"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/cowtrace-target-\(getpid())"))
        let r2 = try runProduct("cowtrace", ["stat", "--stacks", "/nonexistent/dir/x.folded", "-c", "/bin/true"])
        XCTAssertNotEqual(r2.status, 0)
        XCTAssertTrue(r2.stderr.contains("directory does not exist"), r2.stderr)
    }
}
