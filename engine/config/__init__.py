"""The project file's schemas, one module per part: :mod:`.project` (the whole file and
its loader), :mod:`.source` (a data source), :mod:`.train` (search, families, the gate),
:mod:`.monitor` (rules, sinks, routing), :mod:`.cluster` (cluster profiles), all on the one
:class:`.base.Model` base and read by the one YAML loader, :func:`.base.read_yaml`.

Import from the module that holds a name (``from engine.config.project import
ProjectConfig``): this package itself imports nothing, so a schema module may be imported
first from anywhere without an import circle."""
