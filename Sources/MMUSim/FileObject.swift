/// A file or shmem object with its page cache (`struct address_space`).
struct FileObject {
    var name: String
    var sizePages: Int
    /// Frame per page offset, -1 when not cached.
    var cache: [Int32]
    var isShmem: Bool
    /// VMAs that refer to it; an anonymous shmem object dies with its last one.
    var mappings = 0
    /// Pages charged to Committed_AS for a MAP_SHARED|MAP_ANONYMOUS object (shmem_acct_size).
    var committedPages = 0
    var anonymousShmem = false
}

/// A memory cgroup with a limit (memory.max / memory.limit_in_bytes).
struct MemoryCgroup {
    var name: String
    var limitPages: Int
    var usagePages = 0
}
