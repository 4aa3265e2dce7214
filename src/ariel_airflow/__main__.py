from ariel_airflow.cli import main

main()
