/// Files (with their page cache) and memory cgroups.
extension Machine {
    /// Creates a file of `size` bytes whose pages are read from "disk" on first use.
    @discardableResult
    public func createFile(_ name: String, size: UInt64) -> FileID {
        let pages = Int(Paging.pageAlignUp(size) >> 12)
        files.append(FileObject(name: name, sizePages: pages, cache: [Int32](repeating: -1, count: pages), isShmem: false))
        return FileID(rawValue: Int32(files.count - 1))
    }

    public func file(named name: String) -> FileID? {
        files.firstIndex { $0.name == name && !$0.anonymousShmem }.map { FileID(rawValue: Int32($0)) }
    }

    /// Creates a memory cgroup with a limit in bytes.
    public func createCgroup(_ name: String, limitBytes: UInt64) throws {
        guard !memcgs.contains(where: { $0.name == name }) else {
            throw MMError.invalidArgument("cgroup \(name) exists")
        }
        memcgs.append(MemoryCgroup(name: name, limitPages: Int(limitBytes >> 12)))
    }

    func memcgIndex(_ name: String) throws -> Int {
        guard let i = memcgs.firstIndex(where: { $0.name == name }) else {
            throw MMError.invalidArgument("no cgroup named \(name)")
        }
        return i
    }

    /// Pages charged to a memory cgroup (memory.current / 4096).
    public func cgroupUsagePages(_ name: String) -> Int? { memcgs.first { $0.name == name }?.usagePages }

    /// Moves a process into a cgroup (its existing pages stay charged where they are, as in cgroup v2).
    public func attach(_ pid: Int32, toCgroup name: String) throws {
        try task(pid).memcg = memcgIndex(name)
    }
}
