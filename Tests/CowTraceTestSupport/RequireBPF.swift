import CowTraceKit
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Tests that load BPF call this first. Without the privileges they skip with
/// the reason printed; with COWTRACE_REQUIRE_BPF=1 (CI) a skip is a failure.
public func requireBPF(file: StaticString = #filePath, line: UInt = #line) throws {
    let missing = KernelFacts.missingBPFCapabilities()
    let btf = FileManager.default.fileExists(atPath: KernelFacts.btfPath)
    guard !missing.isEmpty || !btf else { return }
    let reason = !missing.isEmpty
        ? "needs \(missing.joined(separator: "+")) to load BPF: run the tests as root"
        : "this kernel has no BTF at \(KernelFacts.btfPath)"
    if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" {
        XCTFail("COWTRACE_REQUIRE_BPF=1 but this test cannot run: \(reason)", file: file, line: line)
        throw XCTSkip(reason)
    }
    print("skipping: \(reason)")
    throw XCTSkip(reason)
}

/// The directory holding the built executables (cowtrace, cowtrace-workload),
/// which is where the test bundle runs from.
public func builtProductsDirectory() -> URL {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("cowtrace").path) {
        dir = dir.deletingLastPathComponent()
    }
    return dir
}
