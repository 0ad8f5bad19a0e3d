"""The work: pure logic, one adapter per external system, thin Prefect task wrappers."""
