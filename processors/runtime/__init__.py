"""What every Meterly process runs with: settings, JSON logs, the operator token, clocks."""
