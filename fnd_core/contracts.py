"""Names other systems see: DAG ids, task ids, asset URIs and the Airflow connection ids.

Defined once here and read by the DAG files, the UI plugin, the notifier and the local stack's
kickoff, so that renaming a DAG or an asset cannot leave one of them pointing at the old name.
"""
