"""The chaos campaign: seeded random operations from several clients under injected faults, with
invariants checked against everything the simulator carried out (DESIGN §7)."""
