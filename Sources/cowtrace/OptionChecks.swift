import ArgumentParser

/// Checks of option values that must not hide a misspelt option.
/// ArgumentParser runs validate() before it looks for unknown options, so
/// `stat --pdi 1234` used to say "say what to trace" instead of naming
/// `--pdi`. CowTrace.main parses twice: first with these checks off, so the
/// parser's own errors (unknown option, bad value) win; then with them on,
/// so their errors still get ArgumentParser's usage line and exit 64.
protocol OptionChecks: ParsableArguments {
    func checkOptions() throws
}

extension OptionChecks {
    func validate() throws {
        if OptionChecksPass.enabled { try checkOptions() }
    }
}

enum OptionChecksPass {
    nonisolated(unsafe) static var enabled = true
}
