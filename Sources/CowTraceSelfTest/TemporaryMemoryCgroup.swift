import CowTraceKit
import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A memory cgroup made for a test, with a hard limit and no swap, removed by
/// `remove()`. On v2 it is created under `parent` (default: the hierarchy's
/// top), whose cgroup.subtree_control must have +memory for the child to get
/// a memory.max; if it lacks it, +memory is enabled there and disabled again
/// on removal (`notes` says so).
public struct TemporaryMemoryCgroup {
    public let hierarchy: MemoryCgroupHierarchy
    public let name: String
    public let path: String
    /// The cgroup's path in the hierarchy, as the kernel names the victim's memcg.
    public let cgroupPath: String
    private(set) var inode: UInt64 = 0
    private(set) var notes: [String] = []
    private var enabledMemoryIn: String?

    public var procsFile: String { path + "/cgroup.procs" }

    public init(limitBytes: UInt64, parent: String? = nil) throws {
        guard let hierarchy = MemoryCgroupHierarchy.live() else { throw OOMSelfTestError.noMemoryCgroup }
        self.hierarchy = hierarchy
        let parentDir = parent.map { $0.count > 1 && $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? hierarchy.mountPoint
        guard hierarchy.cgroupPath(ofDirectory: parentDir) != nil,
              FileManager.default.fileExists(atPath: parentDir + "/cgroup.procs") else {
            throw OOMSelfTestError.badParent(path: parentDir, hierarchy: hierarchy)
        }
        name = "cowtrace-oom-selftest-\(getpid())"
        path = parentDir + "/" + name
        cgroupPath = hierarchy.cgroupPath(ofDirectory: path) ?? "/" + name
        if hierarchy.version == .v2 { try enableMemoryController(in: parentDir) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            let error = OOMSelfTestError.cgroupSetup(path: path, errno: .current)
            disableMemoryControllerIfEnabled()
            throw error
        }
        do {
            try Self.write("\(limitBytes)", to: path + "/" + hierarchy.limitFile)
            // No swap accounting (swapaccount=0, or no swap built in) means no such file: nothing can swap then either.
            if let swap = hierarchy.swapLimitFile, FileManager.default.fileExists(atPath: path + "/" + swap) {
                try Self.write("0", to: path + "/" + swap)
            }
        } catch {
            remove()
            throw error
        }
        var st = stat()
        stat(path, &st)
        inode = UInt64(st.st_ino)
    }

    /// v2 gives a child memory.max only when its parent's subtree_control has +memory.
    private mutating func enableMemoryController(in parentDir: String) throws {
        let control = parentDir + "/cgroup.subtree_control"
        if (readPseudoFile(control) ?? "").split(whereSeparator: \.isWhitespace).contains("memory") { return }
        guard (readPseudoFile(parentDir + "/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace).contains("memory") else {
            throw OOMSelfTestError.memoryNotDelegated(parent: parentDir)
        }
        do {
            try Self.write("+memory", to: control)
        } catch OOMSelfTestError.cgroupSetup(_, let errno) where errno == Errno(EBUSY) {
            throw OOMSelfTestError.parentHasProcesses(parent: parentDir)
        }
        enabledMemoryIn = control
        notes.append("enabled +memory in \(control) (disabled again afterwards)")
    }

    private func disableMemoryControllerIfEnabled() {
        if let control = enabledMemoryIn { try? Self.write("-memory", to: control) }
    }

    static func write(_ value: String, to file: String) throws {
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OOMSelfTestError.cgroupSetup(path: file, errno: .current) }
        defer { close(fd) }
        let n = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        if n < 0 { throw OOMSelfTestError.cgroupSetup(path: file, errno: .current) }
    }

    /// rmdir fails while the killed processes are still exiting: retry a while.
    public func remove() {
        for _ in 0..<50 {
            if rmdir(path) == 0 || errno == ENOENT { break }
            usleep(100_000)
        }
        disableMemoryControllerIfEnabled()
    }
}
