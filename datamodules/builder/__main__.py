from lightning_fed.datamodules.builder.scenario_builder import main

main()
