import CowTraceFormat
@testable import CowTraceKit
import XCTest

/// The text range of a kernel function from /proc/kallsyms, read as bytes.
final class KernelSymbolRangeTests: XCTestCase {
    /// What the reader did before it read bytes: the reference.
    private func reference(_ name: String, _ text: String) -> (UInt64, UInt64)? {
        var start: UInt64?
        var addresses: [UInt64] = []
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count >= 3, parts[1] == "t" || parts[1] == "T",
                  let address = UInt64(parts[0], radix: 16), address != 0 else { continue }
            addresses.append(address)
            if parts[2] == name { start = address }
        }
        guard let start, let end = addresses.filter({ $0 > start }).min() else { return nil }
        return (start, end)
    }

    private func range(_ name: String, _ text: String) -> (UInt64, UInt64)? {
        KernelSymbolRange(named: name, kallsyms: Array(text.utf8)).map { ($0.start, $0.end) }
    }

    func testRangeEndsAtTheNextTextSymbol() {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81200000 t mem_cgroup_out_of_memory
            ffffffff81200100 d some_data
            ffffffff81100000 T before
            ffffffff81200180 T after
            ffffffff812001c0 T  spaced
            ffffffffc0001000 t mem_cgroup_out_of_memory_x\t[mod]
            ffffffffc0002000 t modfunc\t[mod]
            0000000000000000 T zero
            xyz T broken
            ffffffff81300000 T
            ffffffff81400000 T tail
            """
        XCTAssertEqual(range("mem_cgroup_out_of_memory", text).map { [$0.0, $0.1] }, [0xffffffff81200000, 0xffffffff81200180])
        XCTAssertEqual(range("after", text).map { [$0.0, $0.1] }, [0xffffffff81200180, 0xffffffff812001c0])
        XCTAssertEqual(range("spaced", text).map { [$0.0, $0.1] }, [0xffffffff812001c0, 0xffffffff81400000], "runs of spaces are one separator")
        XCTAssertNil(range("modfunc", text), "a module's symbol carries its module in the name field")
        XCTAssertNil(range("some_data", text), "data symbols are not text")
        XCTAssertEqual(range("tail", text).map { [$0.0, $0.1] }, [0xffffffff81400000, 0xffffffffc0001000],
                       "modules' text symbols end the range too")
        XCTAssertNil(range("modfunc", text.replacingOccurrences(of: "\t[mod]", with: "")), "the last text symbol has no end")
        XCTAssertNil(range("zero", text), "hidden addresses (kptr_restrict) read as none")
        XCTAssertNil(range("missing", text))
        XCTAssertNil(range("x", ""))
        for name in ["mem_cgroup_out_of_memory", "after", "spaced", "modfunc", "some_data", "tail", "zero", "broken", "_stext", "before"] {
            XCTAssertEqual(range(name, text).map { [$0.0, $0.1] }, reference(name, text).map { [$0.0, $0.1] }, name)
        }
    }

    /// On this kernel's /proc/kallsyms: the same answer as the reference.
    func testSameAsTheReferenceOnThisKernel() throws {
        guard let bytes = readPseudoFileBytes("/proc/kallsyms"), !bytes.isEmpty else { throw XCTSkip("no /proc/kallsyms") }
        let text = String(decoding: bytes, as: UTF8.self)
        for name in ["mem_cgroup_out_of_memory", "no_such_symbol_here"] {
            XCTAssertEqual(range(name, text).map { [$0.0, $0.1] }, reference(name, text).map { [$0.0, $0.1] }, name)
        }
    }
}
