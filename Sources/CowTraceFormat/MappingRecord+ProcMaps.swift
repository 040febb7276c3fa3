import Foundation

extension MappingRecord {
    /// /proc/PID/maps lines: "start-end perms offset dev inode path".
    public static func parse(procMaps text: String, pid: Int32) -> [MappingRecord] {
        text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard parts.count >= 5 else { return nil }
            let range = parts[0].split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
                  let offset = UInt64(parts[2], radix: 16), let inode = UInt64(parts[4]) else { return nil }
            let path = parts.count > 5 ? parts[5].trimmingCharacters(in: .whitespaces) : ""
            return MappingRecord(pid: pid, start: start, end: end, permissions: String(parts[1]),
                                 offset: offset, inode: inode, path: path)
        }
    }
}
