@testable import MMUSim
import XCTest

let KiB: UInt64 = 1024
let MiB: UInt64 = 1024 * 1024
let GiB: UInt64 = 1024 * MiB
let page: UInt64 = 4096

extension Machine {
    /// mmap of private anonymous read-write memory.
    func anon(_ pid: Int32, _ bytes: UInt64, flags extra: MapFlags = []) throws -> UInt64 {
        try mmap(pid, length: bytes, protection: .readWrite, flags: [.private, .anonymous, extra])
    }
}
