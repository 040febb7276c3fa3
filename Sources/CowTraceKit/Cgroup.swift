import CowTraceFormat
import Foundation

/// The processes of a cgroup directory (v1 or v2) and of its descendants.
/// cowtrace traces them, and the kernel side follows their forks; the CLI
/// rescans every interval to pick up processes moved into the cgroup.
public struct CgroupMembers {
    public let path: String

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TracerError.badCgroup(path: path, reason: "no such directory")
        }
        guard FileManager.default.fileExists(atPath: path + "/cgroup.procs") else {
            throw TracerError.badCgroup(path: path, reason: "not a cgroup (it has no cgroup.procs)")
        }
        self.path = path
    }

    public func pids() -> [Int32] {
        var result: [Int32] = []
        var pending = [path]
        while let dir = pending.popLast() {
            if let procs = readPseudoFile(dir + "/cgroup.procs") {
                result += procs.split(separator: "\n").compactMap { Int32($0) }
            }
            let children = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for child in children {
                var isDirectory: ObjCBool = false
                let full = dir + "/" + child
                if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), isDirectory.boolValue {
                    pending.append(full)
                }
            }
        }
        return result
    }
}
