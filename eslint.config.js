import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, noStyle: true, ignores: ['dist/**', 'build/**', 'node_modules/**', 'data/**'] }),
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
]
