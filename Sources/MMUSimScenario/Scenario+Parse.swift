import MMUSim
import Foundation
import Yams

/// A scenario file that cannot be used: where (file, line, field) and why.
public struct ScenarioError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    /// The field's path, e.g. `steps[3].mmap.size`.
    public var field: String
    public var message: String

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return field.isEmpty ? "\(place): \(message)" : "\(place): \(field): \(message)"
    }
}

extension Scenario {
    /// Parses a scenario from YAML or JSON text (JSON is read as YAML flow style,
    /// so both report the line of a bad field).
    public static func parse(_ text: String, file: String = "<scenario>") throws -> Scenario {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ScenarioError(file: file, line: yamlLine(error), field: "", message: "not valid YAML or JSON: \(yamlProblem(error))")
        }
        guard let root else { throw ScenarioError(file: file, line: 1, field: "", message: "the file is empty") }
        let reader = ScenarioReader(file: file)
        return try reader.scenario(root)
    }

    static func yamlLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        default: return "\(error)"
        }
    }
}

/// Reads Yams nodes into a Scenario, naming the line and field of anything wrong.
struct ScenarioReader {
    let file: String

    func fail(_ node: Node?, _ field: String, _ message: String) -> ScenarioError {
        ScenarioError(file: file, line: node?.mark?.line, field: field, message: message)
    }

    /// A mapping whose keys are checked against the allowed set.
    struct Fields {
        let reader: ScenarioReader
        let node: Node
        let path: String
        let pairs: [(String, Node, Node)]

        init(_ reader: ScenarioReader, _ node: Node, _ path: String, allowed: [String]) throws {
            self.reader = reader
            self.node = node
            self.path = path
            guard let mapping = node.mapping else {
                throw reader.fail(node, path, "expected a mapping of fields (\(allowed.joined(separator: ", ")))")
            }
            var pairs: [(String, Node, Node)] = []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else { throw reader.fail(key, path, "field names must be plain words") }
                guard allowed.contains(name) else {
                    throw reader.fail(key, path.isEmpty ? name : "\(path).\(name)",
                                      "unknown field '\(name)'; expected one of: \(allowed.joined(separator: ", "))")
                }
                if pairs.contains(where: { $0.0 == name }) { throw reader.fail(key, "\(path).\(name)", "given twice") }
                pairs.append((name, key, value))
            }
            self.pairs = pairs
        }

        func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }
        func node(_ name: String) -> Node? { pairs.first { $0.0 == name }?.2 }
        func has(_ name: String) -> Bool { node(name) != nil }

        func required<T>(_ name: String, _ parse: (Node, String) throws -> T) throws -> T {
            guard let n = node(name) else { throw reader.fail(self.node, field(name), "missing; this step needs '\(name)'") }
            return try parse(n, field(name))
        }

        func optional<T>(_ name: String, _ parse: (Node, String) throws -> T) throws -> T? {
            guard let n = node(name) else { return nil }
            return try parse(n, field(name))
        }
    }

    // MARK: scalars

    func string(_ node: Node, _ field: String) throws -> String {
        guard let s = node.scalar?.string, !s.isEmpty else { throw fail(node, field, "expected a name or word") }
        return s
    }

    func int(_ node: Node, _ field: String) throws -> Int {
        guard let s = node.scalar?.string, let v = Int(s.replacingOccurrences(of: "_", with: "")) else {
            throw fail(node, field, "expected a whole number, got '\(node.scalar?.string ?? "a list or mapping")'")
        }
        return v
    }

    func bool(_ node: Node, _ field: String) throws -> Bool {
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(node, field, "expected true or false")
        }
    }

    /// "2GiB", "512 MiB", "10GB", "4096", "10 pages".
    func size(_ node: Node, _ field: String) throws -> UInt64 {
        guard let s = node.scalar?.string, let amount = ScenarioReader.amount(s), case .bytes(let b) = amount.pagesAsBytes else {
            throw fail(node, field, "expected a size like 2GiB, 512MiB, 10GB, 4096 or '10 pages', got '\(node.scalar?.string ?? "a list or mapping")'")
        }
        return b
    }

    /// A size, or a percentage of the region ("5%").
    func amount(_ node: Node, _ field: String) throws -> Scenario.Amount {
        guard let s = node.scalar?.string, let a = ScenarioReader.amount(s, percentAllowed: true) else {
            throw fail(node, field, "expected a size (2GiB, 4096, '10 pages') or a percentage of the region (5%), got '\(node.scalar?.string ?? "a list or mapping")'")
        }
        return a
    }

    static let units: [(String, UInt64)] = [
        ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
        ("kb", 1000), ("mb", 1_000_000), ("gb", 1_000_000_000), ("tb", 1_000_000_000_000),
        ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1),
    ]

    static func amount(_ text: String, percentAllowed: Bool = false) -> Scenario.Amount? {
        var s = text.trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: "_", with: "")
        if s.hasSuffix("%") {
            guard percentAllowed, let p = Double(s.dropLast().trimmingCharacters(in: .whitespaces)), p >= 0, p <= 100 else { return nil }
            return .percent(p)
        }
        for suffix in [" pages", " page", "pages", "page"] where s.hasSuffix(suffix) {
            guard let n = Int(s.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
            return .pages(n)
        }
        var multiplier: UInt64 = 1
        for (unit, m) in units where s.hasSuffix(unit) {
            s = String(s.dropLast(unit.count)).trimmingCharacters(in: .whitespaces)
            multiplier = m
            break
        }
        guard let v = Double(s), v >= 0, v * Double(multiplier) < 1e18 else { return nil }
        return .bytes(UInt64((v * Double(multiplier)).rounded()))
    }

    func protection(_ node: Node, _ field: String) throws -> Protection {
        guard let s = node.scalar?.string.lowercased() else { throw fail(node, field, "expected r, rw, rx, rwx or none") }
        if s == "none" { return .none }
        var p: Protection = []
        for c in s {
            switch c {
            case "r": p.insert(.read)
            case "w": p.insert(.write)
            case "x": p.insert(.exec)
            case "-": break
            default: throw fail(node, field, "expected r, rw, rx, rwx or none, got '\(s)'")
            }
        }
        return p
    }

    func advice(_ node: Node, _ field: String) throws -> Advice {
        guard let s = node.scalar?.string.lowercased(), let a = Advice(rawValue: s) else {
            throw fail(node, field, "expected one of: \(Advice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return a
    }

    func adviceList(_ node: Node, _ field: String) throws -> [Advice] {
        if let seq = node.sequence { return try seq.enumerated().map { try advice($0.element, "\(field)[\($0.offset)]") } }
        return try [advice(node, field)]
    }

    // MARK: structure

    func scenario(_ root: Node) throws -> Scenario {
        let top = try Fields(self, root, "", allowed: ["name", "description", "machine", "cgroups", "files", "steps", "expect"])
        let base = file.split(separator: "/").last.map(String.init) ?? file
        let name = try top.optional("name", string) ?? (base.split(separator: ".").first.map(String.init) ?? base)
        let summary = try top.optional("description", string) ?? ""
        let machine = try top.optional("machine", machineConfiguration) ?? MachineConfiguration()
        var scenario = Scenario(name: name, summary: summary, machine: machine)
        scenario.cgroups = try top.optional("cgroups") { n, f in
            try list(n, f).map { item, path in
                let c = try Fields(self, item, path, allowed: ["name", "limit"])
                return Scenario.Cgroup(name: try c.required("name", string), limitBytes: try c.required("limit", size))
            }
        } ?? []
        scenario.files = try top.optional("files") { n, f in
            try list(n, f).map { item, path in
                let c = try Fields(self, item, path, allowed: ["name", "size"])
                return Scenario.File(name: try c.required("name", string), sizeBytes: try c.required("size", size))
            }
        } ?? []
        scenario.steps = try top.required("steps") { n, f in try list(n, f).map { try step($0, $1) } }
        scenario.expectations = try top.optional("expect") { n, f in try list(n, f).map { try expectation($0, $1) } } ?? []
        return scenario
    }

    func list(_ node: Node, _ field: String) throws -> [(Node, String)] {
        guard let seq = node.sequence else { throw fail(node, field, "expected a list") }
        return seq.enumerated().map { ($0.element, "\(field)[\($0.offset + 1)]") }
    }

    func machineConfiguration(_ node: Node, _ field: String) throws -> MachineConfiguration {
        let m = try Fields(self, node, field, allowed: ["ram", "swap", "overcommit", "overcommit_ratio", "overcommit_kbytes",
                                                       "admin_reserve_kbytes", "user_reserve_kbytes", "thp", "huge_zero_page"])
        var c = MachineConfiguration()
        if let v = try m.optional("ram", size) { c.ramBytes = v }
        if let v = try m.optional("swap", size) { c.swapBytes = v }
        if let v = try m.optional("overcommit", { n, f -> OvercommitMode in
            switch n.scalar?.string.lowercased() {
            case "0", "heuristic", "guess": return .heuristic
            case "1", "always": return .always
            case "2", "never": return .never
            default: throw fail(n, f, "expected 0 (heuristic), 1 (always) or 2 (never)")
            }
        }) { c.overcommitMode = v }
        if let v = try m.optional("overcommit_ratio", int) { c.overcommitRatio = v }
        if let v = try m.optional("overcommit_kbytes", int) { c.overcommitKBytes = v }
        if let v = try m.optional("admin_reserve_kbytes", int) { c.adminReserveKBytes = v }
        if let v = try m.optional("user_reserve_kbytes", int) { c.userReserveKBytes = v }
        if let v = try m.optional("thp", { n, f -> THPMode in
            guard let s = n.scalar?.string.lowercased(), let t = THPMode(rawValue: s) else {
                throw fail(n, f, "expected always, madvise or never")
            }
            return t
        }) { c.transparentHugePages = v }
        if let v = try m.optional("huge_zero_page", bool) { c.hugeZeroPage = v }
        guard c.ramBytes >= 1 << 20 else { throw fail(m.node("ram") ?? node, m.field("ram"), "at least 1MiB of RAM is needed") }
        guard c.ramBytes + c.swapBytes <= Machine.maxMemoryBytes else {
            throw fail(m.node("ram") ?? node, m.field("ram"), "RAM + swap can be at most 4TiB in the simulator")
        }
        return c
    }

    static let actions = ["spawn", "mmap", "munmap", "mprotect", "madvise", "brk", "read", "write", "store",
                          "increment", "fork", "exec", "exit", "oom_score_adj", "pin", "ksm"]

    func step(_ node: Node, _ path: String) throws -> Scenario.Step {
        guard let mapping = node.mapping else { throw fail(node, path, "a step is a mapping with one action: \(Self.actions.joined(separator: ", "))") }
        // The first key names the action (so `spawn` may take an `oom_score_adj` field).
        guard let first = mapping.keys.first?.scalar?.string, Self.actions.contains(first) else {
            throw fail(node, path, "a step starts with its action, one of: \(Self.actions.joined(separator: ", "))")
        }
        let verb = first
        let line = node.mark?.line ?? 0
        let stepPath = "\(path).\(verb)"
        func fields(_ extra: [String]) throws -> Fields {
            try Fields(self, node, stepPath, allowed: [verb, "note"] + extra)
        }
        func span(_ f: Fields) throws -> Scenario.Span {
            var s = Scenario.Span()
            if let v = try f.optional("offset", amount) { s.offset = v }
            if let v = try f.optional("length", amount) { s.length = v }
            if let v = try f.optional("every", int) {
                guard v >= 1 else { throw fail(f.node("every"), f.field("every"), "must be 1 or more") }
                s.every = v
            }
            return s
        }
        let action: Scenario.Action
        let f: Fields
        switch verb {
        case "spawn":
            f = try fields(["pid", "oom_score_adj", "cgroup", "uid", "cap_sys_admin"])
            action = .spawn(process: try f.required(verb, string), pid: try f.optional("pid", int).map(Int32.init),
                            oomScoreAdj: try f.optional("oom_score_adj", int) ?? 0, cgroup: try f.optional("cgroup", string),
                            uid: UInt32(try f.optional("uid", int) ?? 0), capSysAdmin: try f.optional("cap_sys_admin", bool) ?? false)
        case "mmap":
            f = try fields(["process", "size", "prot", "shared", "file", "offset", "noreserve", "advise"])
            action = .mmap(process: try f.required("process", string), region: try f.required(verb, string),
                           size: try f.required("size", size), protection: try f.optional("prot", protection) ?? .readWrite,
                           shared: try f.optional("shared", bool) ?? false, file: try f.optional("file", string),
                           offset: try f.optional("offset", size) ?? 0, noReserve: try f.optional("noreserve", bool) ?? false,
                           advice: try f.optional("advise", adviceList) ?? [])
        case "munmap":
            f = try fields(["process"])
            action = .munmap(process: try f.required("process", string), region: try f.required(verb, string))
        case "mprotect":
            f = try fields(["process", "prot"])
            action = .mprotect(process: try f.required("process", string), region: try f.required(verb, string),
                               protection: try f.required("prot", protection))
        case "madvise":
            f = try fields(["process", "advice"])
            action = .madvise(process: try f.required("process", string), region: try f.required(verb, string),
                              advice: try f.required("advice", advice))
        case "brk":
            f = try fields(["process", "size"])
            action = .brk(process: try f.required("process", string), region: try f.required(verb, string),
                          size: try f.required("size", size))
        case "read", "write":
            f = try fields(["process", "offset", "length", "every"])
            action = .access(process: try f.required("process", string), region: try f.required(verb, string),
                             kind: verb == "read" ? .read : .write, span: try span(f))
        case "pin":
            f = try fields(["process", "offset", "length", "every"])
            action = .pin(process: try f.required("process", string), region: try f.required(verb, string), span: try span(f))
        case "store":
            f = try fields(["process", "offset", "value"])
            action = .store(process: try f.required("process", string), region: try f.required(verb, string),
                            offset: try f.optional("offset", amount) ?? .bytes(0),
                            value: UInt64(bitPattern: Int64(try f.required("value", int))))
        case "increment":
            f = try fields(["process", "offset"])
            action = .increment(process: try f.required("process", string), region: try f.required(verb, string),
                                offset: try f.optional("offset", amount) ?? .bytes(0))
        case "fork":
            f = try fields(["child", "pid"])
            action = .fork(parent: try f.required(verb, string), child: try f.required("child", string),
                           pid: try f.optional("pid", int).map(Int32.init))
        case "exec":
            f = try fields(["comm"])
            let p = try f.required(verb, string)
            action = .exec(process: p, comm: try f.optional("comm", string) ?? p)
        case "exit":
            f = try fields([])
            action = .exit(process: try f.required(verb, string))
        case "oom_score_adj":
            f = try fields(["value"])
            let value = try f.required("value", int)
            guard (-1000...1000).contains(value) else { throw fail(f.node("value"), f.field("value"), "must be between -1000 and 1000") }
            action = .oomScoreAdj(process: try f.required(verb, string), value: value)
        default: // "ksm"
            f = try fields([])
            action = .ksm
        }
        return Scenario.Step(action: action, line: line, note: try f.optional("note", string))
    }

    func expectation(_ node: Node, _ path: String) throws -> Scenario.Expectation {
        let kinds = ["killed", "alive", "copies", "oom_kills", "failed_steps", "value"]
        let f = try Fields(self, node, path, allowed: kinds)
        guard f.pairs.count == 1, let (kind, _, value) = f.pairs.first else {
            throw fail(node, path, "one check per entry: \(kinds.joined(separator: ", "))")
        }
        let field = f.field(kind)
        switch kind {
        case "killed": return .killed(try string(value, field))
        case "alive": return .alive(try string(value, field))
        case "oom_kills": return .oomKills(try int(value, field))
        case "failed_steps": return .failedSteps(try int(value, field))
        case "copies":
            let c = try Fields(self, value, field, allowed: ["process", "equals"])
            return .copies(process: try c.required("process", string), equals: try c.required("equals", int))
        default:
            let c = try Fields(self, value, field, allowed: ["process", "region", "offset", "equals"])
            return .value(process: try c.required("process", string), region: try c.required("region", string),
                          offset: try c.optional("offset", amount) ?? .bytes(0),
                          equals: UInt64(bitPattern: Int64(try c.required("equals", int))))
        }
    }
}

extension Scenario.Amount {
    /// Pages given as a count become bytes (for sizes, where percentages make no sense).
    var pagesAsBytes: Scenario.Amount {
        if case .pages(let p) = self { return .bytes(UInt64(p) * Paging.pageSize) }
        return self
    }
}
