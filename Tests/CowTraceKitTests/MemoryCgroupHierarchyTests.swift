@testable import CowTraceKit
import Foundation
import XCTest

/// The memory controller's hierarchy, found from /proc/self/mountinfo.
final class MemoryCgroupHierarchyTests: XCTestCase {
    /// The truth is the kernel's /proc/self/cgroup: the cgroup it says this
    /// process is in must be a directory of the found hierarchy whose
    /// cgroup.procs lists this process.
    func testLiveHierarchyHoldsThisProcess() throws {
        let hierarchy = try XCTUnwrap(MemoryCgroupHierarchy.live(), "no memory controller mounted")
        let lines = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8).split(separator: "\n")
        // v1: "4:memory:/a/b" (the controller list may hold several, comma-separated); v2: "0::/a/b".
        let line = try XCTUnwrap(lines.first { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return false }
            return hierarchy.version == .v2 ? fields[0] == "0" && fields[1].isEmpty : fields[1].split(separator: ",").contains("memory")
        }, "/proc/self/cgroup has no line for the \(hierarchy.version) memory hierarchy")
        let path = String(line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)[2])
        let directory = try XCTUnwrap(hierarchy.directory(of: path), "\(path) not under \(hierarchy.mountPoint)")
        let procs = try String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)
        XCTAssertTrue(procs.split(separator: "\n").contains(Substring("\(getpid())")), "\(directory)/cgroup.procs lacks pid \(getpid())")
        XCTAssertEqual(hierarchy.cgroupPath(ofDirectory: directory), path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: hierarchy.mountPoint + "/" + (hierarchy.version == .v2 ? "cgroup.subtree_control" : hierarchy.limitFile)))
    }

    private let hybrid = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup rw,memory
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    private let pure = """
        25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        """

    func testV1MemoryMountWinsOverCgroup2() throws {
        let h = try XCTUnwrap(MemoryCgroupHierarchy.find(mountinfo: hybrid) { _ in "cpu memory pids" })
        XCTAssertEqual(h, MemoryCgroupHierarchy(version: .v1, mountPoint: "/sys/fs/cgroup/mem ory"))
        XCTAssertEqual(h.limitFile, "memory.limit_in_bytes")
        XCTAssertNil(h.swapLimitFile)
    }

    func testCgroup2NeedsMemoryInItsControllers() throws {
        XCTAssertNil(MemoryCgroupHierarchy.find(mountinfo: pure) { _ in "cpu io pids" })
        var asked: [String] = []
        let h = try XCTUnwrap(MemoryCgroupHierarchy.find(mountinfo: pure) { asked.append($0); return "cpuset cpu io memory pids\n" })
        XCTAssertEqual(asked, ["/sys/fs/cgroup/cgroup.controllers"])
        XCTAssertEqual(h.version, .v2)
        XCTAssertEqual(h.limitFile, "memory.max")
        XCTAssertEqual(h.usageFile, "memory.current")
        XCTAssertEqual(h.swapLimitFile, "memory.swap.max")
        XCTAssertEqual(h.directory(of: "/system.slice/foo.service"), "/sys/fs/cgroup/system.slice/foo.service")
        XCTAssertEqual(h.directory(of: "/"), "/sys/fs/cgroup")
        XCTAssertEqual(h.cgroupPath(ofDirectory: "/sys/fs/cgroup/system.slice/foo.service/"), "/system.slice/foo.service")
        XCTAssertEqual(h.cgroupPath(ofDirectory: "/sys/fs/cgroup"), "/")
        XCTAssertNil(h.cgroupPath(ofDirectory: "/sys/fs/cgroupx/a"))
    }

    func testBindMountedSubtree() {
        let h = MemoryCgroupHierarchy(version: .v2, mountPoint: "/c", mountRoot: "/kubepods/pod1")
        XCTAssertEqual(h.directory(of: "/kubepods/pod1/app"), "/c/app")
        XCTAssertNil(h.directory(of: "/kubepods/pod10/app"))
        XCTAssertEqual(h.cgroupPath(ofDirectory: "/c/app"), "/kubepods/pod1/app")
        XCTAssertEqual(h.cgroupPath(ofDirectory: "/c"), "/kubepods/pod1")
    }

    func testLimitValues() {
        XCTAssertNil(MemoryCgroupHierarchy.parseLimit("max\n"))
        XCTAssertNil(MemoryCgroupHierarchy.parseLimit("9223372036854771712")) // v1's unlimited
        XCTAssertEqual(MemoryCgroupHierarchy.parseLimit("67108864\n"), 67_108_864)
    }
}
