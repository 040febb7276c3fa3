import CowTraceKit
import CowTraceMetrics
import Foundation
import XCTest

/// A process first seen after it exited, as a zombie its parent has not
/// reaped yet: the cgroup `serve --group-by cgroup` reads for it, against the
/// cgroup the test put it in. The kernel's truth is the directory the test
/// made and the process's state in /proc/PID/stat.
final class ProcessCgroupZombieTests: XCTestCase {
    func testStatFlagsAfterACommandWithSpacesAndParentheses() {
        let stat = "4242 (a) b (c) Z 1 4242 4242 0 -1 4194308 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n"
        XCTAssertEqual(ProcFS.flags(procStat: stat), 4_194_308)
        XCTAssertEqual(ProcFS.statFields(stat)?.first, "Z")
        XCTAssertNil(ProcFS.flags(procStat: "4242 (cut"))
    }

    /// v1 shows a zombie in the root cgroup: read gives nil (the aggregator
    /// then takes its parent's group), never "/". While it lives, its cgroup.
    func testAV1ZombieIsNotPutInTheRootCgroup() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to make a memory cgroup")
        let hierarchy = try XCTUnwrap(MemoryCgroupHierarchy.live(), "no memory cgroup hierarchy on this host")
        try XCTSkipUnless(hierarchy.version == .v1, "the memory controller is on cgroup v2 here (the v2 case is testV2ZombieOfARemovedCgroupKeepsItsPath)")
        let directory = hierarchy.mountPoint + "/cowtrace-zombie-test-\(getpid())"
        let path = try XCTUnwrap(hierarchy.cgroupPath(ofDirectory: directory))
        let (pid, parent) = try startZombie(in: directory, liveSeconds: 0.5)
        defer { finish(parent, removing: directory) }

        let alive = try XCTUnwrap(ProcessCgroup.read(pid: pid, version: .v1), "the live process's cgroup")
        XCTAssertEqual(alive.path, path)
        try waitForState("Z", pid)
        let raw = try XCTUnwrap(ProcessCgroup.parse(procCgroup: readProc(pid, "cgroup"), version: .v1))
        print("zombie \(pid) in \(path): /proc/\(pid)/cgroup says \(raw) for memory; read gives \(ProcessCgroup.read(pid: pid, version: .v1)?.path ?? "nil")")
        let read = ProcessCgroup.read(pid: pid, version: .v1)
        XCTAssertTrue(read == nil || read?.path == path, "a zombie of \(path) read as \(read?.path ?? "nil")")
    }

    /// v2 keeps a zombie's path; once its cgroup is removed, the kernel appends " (deleted)".
    func testV2ZombieOfARemovedCgroupKeepsItsPath() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to make a cgroup")
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let mount = try XCTUnwrap(mountinfo.split(separator: "\n").lazy.compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard let dash = f.firstIndex(of: "-"), f.count > dash + 1, f[dash + 1] == "cgroup2", f[3] == "/" else { return nil }
            return String(f[4])
        }.first, "no cgroup2 mount on this host")
        let name = "cowtrace-zombie-test-\(getpid())"
        let directory = mount + "/" + name
        let (pid, parent) = try startZombie(in: directory, liveSeconds: 0.2)
        defer { finish(parent, removing: directory) }
        try waitForState("Z", pid)
        // A zombie is not in cgroup.procs: the directory can go while it waits.
        var removed = false
        for _ in 0..<50 where !removed {
            removed = rmdir(directory) == 0
            if !removed { usleep(20_000) }
        }
        XCTAssertTrue(removed, "rmdir \(directory): \(String(cString: strerror(errno)))")
        let raw = try XCTUnwrap(ProcessCgroup.parse(procCgroup: readProc(pid, "cgroup"), version: .v2))
        XCTAssertEqual(raw, "/\(name) (deleted)", "the kernel's own text")
        XCTAssertEqual(ProcessCgroup.read(pid: pid, version: .v2)?.path, "/\(name)")
    }

    // MARK: helpers

    /// A shell that moves itself into `directory` (made here), lives
    /// `liveSeconds`, and exits under a parent that never reaps it (`sleep`,
    /// exec'd): a zombie until `finish`.
    private func startZombie(in directory: String, liveSeconds: Double) throws -> (Int32, Process) {
        XCTAssertTrue(mkdir(directory, 0o755) == 0 || errno == EEXIST, "mkdir \(directory): \(String(cString: strerror(errno)))")
        let pidFile = NSTemporaryDirectory() + "cowtrace-zombie-\(getpid())-\(UUID().uuidString)"
        defer { unlink(pidFile) }
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sh")
        parent.arguments = ["-c", "sh -c 'echo $$ > \(directory)/cgroup.procs && sleep \(liveSeconds)' & echo $! > \(pidFile); exec sleep 30"]
        try parent.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                // In the cgroup once its memory line names the directory.
                for _ in 0..<100 {
                    if let line = try? readProc(pid, "cgroup"), line.contains(directory.split(separator: "/").last!) { return (pid, parent) }
                    usleep(10_000)
                }
                break
            }
            usleep(10_000)
        }
        finish(parent, removing: directory)
        throw XCTSkip("the test's child never moved into \(directory)")
    }

    private func finish(_ parent: Process, removing directory: String) {
        if parent.isRunning { parent.terminate() }
        parent.waitUntilExit()
        for _ in 0..<50 {
            if rmdir(directory) == 0 || errno == ENOENT { return }
            usleep(20_000)
        }
    }

    private func readProc(_ pid: Int32, _ file: String) throws -> String {
        try String(contentsOfFile: "/proc/\(pid)/\(file)", encoding: .utf8)
    }

    private func waitForState(_ state: String, _ pid: Int32) throws {
        for _ in 0..<500 {
            if ProcFS.statFields(try readProc(pid, "stat"))?.first == Substring(state) { return }
            usleep(10_000)
        }
        XCTFail("process \(pid) never reached state \(state)")
    }
}
