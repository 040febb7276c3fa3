import CowTraceKit
import CowTraceMetrics
import Foundation
import XCTest

/// Cgroup labels from /proc/PID/cgroup text and real-looking container paths.
final class ProcessCgroupTests: XCTestCase {
    let id = "4f1c2b7a9d3e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f8091a2b3c4d5e6f7"

    func testV2LineOnAV2HostAndTheMemoryLineOnAV1Host() {
        let hybrid = "12:pids:/user.slice\n4:memory:/process_api/b1f1\n3:cpu,cpuacct:/\n0::/user.slice/session-3.scope\n"
        XCTAssertEqual(ProcessCgroup.parse(procCgroup: hybrid, version: .v1), "/process_api/b1f1")
        XCTAssertEqual(ProcessCgroup.parse(procCgroup: hybrid, version: .v2), "/user.slice/session-3.scope")
        XCTAssertEqual(ProcessCgroup.parse(procCgroup: "0::/system.slice/redis-server.service\n", version: .v2),
                       "/system.slice/redis-server.service")
        XCTAssertNil(ProcessCgroup.parse(procCgroup: "0::/\n", version: .v1), "no memory controller on v1")
        XCTAssertEqual(ProcessCgroup.parse(procCgroup: "5:memory,hugetlb:/a:b\n", version: .v1), "/a:b", "a colon in the path")
    }

    func testOwnProcessAgreesWithProc() throws {
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        let version = ProcessCgroup.hostVersion
        let c = try XCTUnwrap(ProcessCgroup.read(pid: getpid(), version: version))
        XCTAssertEqual(c.path, ProcessCgroup.parse(procCgroup: text, version: version))
        XCTAssertTrue(c.path.hasPrefix("/"), c.path)
    }

    func testContainerIDs() {
        let cases: [(String, String?)] = [
            ("/docker/\(id)", id),
            ("/system.slice/docker-\(id).scope", id),
            ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f5e4a3b_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-\(id).scope", id),
            ("/kubepods/besteffort/pod0f5e4a3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b/\(id)", id),
            ("/kubepods.slice/kubepods-pod0f5e4a3b_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/crio-\(id).scope", id),
            ("/machine.slice/libpod-\(id).scope/container", id),
            ("/kubepods.slice/kubepods-pod0f5e4a3b_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/crio-conmon-\(id).scope", nil),
            ("/system.slice/redis-server.service", nil),
            ("/docker/\(id.dropLast())", nil),
            ("/", nil),
        ]
        for (path, expected) in cases { XCTAssertEqual(ProcessCgroup(path: path).containerID, expected, path) }
    }

    func testPodUIDs() {
        let uid = "0f5e4a3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
        XCTAssertEqual(ProcessCgroup(path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f5e4a3b_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-\(id).scope").podUID, uid)
        XCTAssertEqual(ProcessCgroup(path: "/kubepods/besteffort/pod\(uid)/\(id)").podUID, uid)
        XCTAssertEqual(ProcessCgroup(path: "/kubepods/pod\(uid)").podUID, uid)
        XCTAssertNil(ProcessCgroup(path: "/system.slice/pod\(uid).service").podUID, "not under kubepods")
        XCTAssertNil(ProcessCgroup(path: "/kubepods/burstable/podnotauid").podUID)
        XCTAssertNil(ProcessCgroup(path: "/docker/\(id)").podUID)
    }
}
